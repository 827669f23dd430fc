//! The selector parser: text to a normalised [`Expr`].
//!
//! A hand-written recursive-descent parser over bytes, with no separate token
//! list, so each error can name the exact column and what the grammar allowed
//! there. Recursion happens only at parentheses, and is bounded by
//! [`MAX_NESTING`]; runs of `!` are folded in a loop.

use super::ast::{CompareOp, Expr, ValueSet};
use super::key::{self, is_key_char};
use super::{MAX_NESTING, SelectorError};

/// Parses a whole selector.
pub(super) fn parse(source: &str) -> Result<Expr, SelectorError> {
    let mut parser = Parser {
        source,
        bytes: source.as_bytes(),
        pos: 0,
        depth: 0,
    };
    parser.skip_ws();
    if parser.at_end() {
        return Ok(Expr::All);
    }
    let expr = parser.or_expr()?;
    parser.skip_ws();
    if !parser.at_end() {
        return Err(parser.error_here("'&&', '||' or the end of the selector"));
    }
    Ok(expr)
}

struct Parser<'s> {
    source: &'s str,
    bytes: &'s [u8],
    /// Byte offset of the next unread byte.
    pos: usize,
    /// Parentheses currently open.
    depth: usize,
}

impl<'s> Parser<'s> {
    fn error_at(&self, offset: usize, expected: impl Into<String>) -> SelectorError {
        SelectorError {
            column: self.column(offset),
            expected: expected.into(),
        }
    }

    fn error_here(&self, expected: impl Into<String>) -> SelectorError {
        self.error_at(self.pos, expected)
    }

    /// 1-based character column of a byte offset.
    fn column(&self, offset: usize) -> usize {
        let offset = offset.min(self.bytes.len());
        // Count the bytes that start a UTF-8 character.
        self.bytes[..offset]
            .iter()
            .filter(|&&b| b & 0xC0 != 0x80)
            .count()
            + 1
    }

    fn at_end(&self) -> bool {
        self.pos >= self.bytes.len()
    }

    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.pos).copied()
    }

    fn skip_ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.pos += 1;
        }
    }

    /// Consumes `token` if the input continues with it.
    fn eat(&mut self, token: &str) -> bool {
        if self.bytes[self.pos..].starts_with(token.as_bytes()) {
            self.pos += token.len();
            true
        } else {
            false
        }
    }

    /// Consumes a run of key characters (possibly empty).
    fn word(&mut self) -> &'s str {
        let start = self.pos;
        while self.peek().is_some_and(is_key_char) {
            self.pos += 1;
        }
        &self.source[start..self.pos]
    }

    fn or_expr(&mut self) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.and_expr()?];
        loop {
            self.skip_ws();
            if self.eat("||") {
                operands.push(self.and_expr()?);
            } else if self.peek() == Some(b'|') {
                return Err(self.error_here("'||'"));
            } else {
                return Ok(Expr::or(operands));
            }
        }
    }

    fn and_expr(&mut self) -> Result<Expr, SelectorError> {
        let mut operands = vec![self.unary()?];
        loop {
            self.skip_ws();
            if self.eat("&&") {
                operands.push(self.unary()?);
            } else if self.peek() == Some(b'&') {
                return Err(self.error_here("'&&'"));
            } else {
                return Ok(Expr::and(operands));
            }
        }
    }

    fn unary(&mut self) -> Result<Expr, SelectorError> {
        let mut negated = false;
        self.skip_ws();
        while self.eat("!") {
            negated = !negated;
            self.skip_ws();
        }
        let expr = self.primary()?;
        Ok(if negated { expr.negate() } else { expr })
    }

    fn primary(&mut self) -> Result<Expr, SelectorError> {
        let start = self.pos;
        match self.peek() {
            Some(b'(') => {
                if self.depth == MAX_NESTING {
                    return Err(
                        self.error_here(format!("at most {MAX_NESTING} nested parentheses"))
                    );
                }
                self.pos += 1;
                self.depth += 1;
                let expr = self.or_expr()?;
                self.skip_ws();
                if !self.eat(")") {
                    return Err(self.error_here(format!(
                        "'&&', '||' or ')' to close the '(' at column {}",
                        self.column(start)
                    )));
                }
                self.depth -= 1;
                Ok(expr)
            }
            Some(byte) if is_key_char(byte) => {
                let word = self.word();
                let after_word = self.pos;
                self.skip_ws();
                if self.peek() == Some(b'(') {
                    match word {
                        "has" => return self.has(),
                        "all" => return self.empty_call("all", Expr::All),
                        "global" => return self.empty_call("global", Expr::Global),
                        _ => {}
                    }
                }
                self.pos = after_word;
                let key = self.key(start, word)?;
                self.operation(key)
            }
            _ => Err(self.error_here("a label key, 'has(', 'all()', 'global()', '!' or '('")),
        }
    }

    /// Validates a key token that started at byte `start`.
    fn key(&self, start: usize, word: &str) -> Result<String, SelectorError> {
        key::check(word)
            .map(|()| word.to_string())
            .map_err(|fault| self.error_at(start + fault.offset, fault.expected))
    }

    /// `has(key)`, positioned at the `(`.
    fn has(&mut self) -> Result<Expr, SelectorError> {
        self.pos += 1;
        self.skip_ws();
        let start = self.pos;
        let word = self.word();
        if word.is_empty() {
            return Err(self.error_here("a label key after 'has('"));
        }
        let key = self.key(start, word)?;
        self.skip_ws();
        if !self.eat(")") {
            return Err(self.error_here("')' to close 'has('"));
        }
        Ok(Expr::Has(key))
    }

    /// `all()` or `global()`, positioned at the `(`.
    fn empty_call(&mut self, name: &str, expr: Expr) -> Result<Expr, SelectorError> {
        self.pos += 1;
        self.skip_ws();
        if !self.eat(")") {
            return Err(self.error_here(format!("')' after '{name}('")));
        }
        Ok(expr)
    }

    /// The operator and operand after a label key.
    fn operation(&mut self, key: String) -> Result<Expr, SelectorError> {
        self.skip_ws();
        let start = self.pos;
        let compare = |op: CompareOp, this: &mut Self| {
            let value = this.string(op.as_str())?;
            Ok(Expr::Compare {
                key: key.clone(),
                op,
                value,
            })
        };
        if self.eat("==") {
            return compare(CompareOp::Eq, self);
        }
        if self.eat("!=") {
            return compare(CompareOp::Ne, self);
        }
        if self.peek() == Some(b'=') {
            return Err(self.error_here("'==' (a single '=' is not an operator)"));
        }
        match self.word() {
            "contains" => compare(CompareOp::Contains, self),
            "startswith" => compare(CompareOp::StartsWith, self),
            "endswith" => compare(CompareOp::EndsWith, self),
            "starts" => {
                self.second_word("starts", "with")?;
                compare(CompareOp::StartsWith, self)
            }
            "ends" => {
                self.second_word("ends", "with")?;
                compare(CompareOp::EndsWith, self)
            }
            "in" => Ok(Expr::In {
                values: self.set("in")?,
                key,
            }),
            "notin" => Ok(Expr::NotIn {
                values: self.set("not in")?,
                key,
            }),
            "not" => {
                self.second_word("not", "in")?;
                Ok(Expr::NotIn {
                    values: self.set("not in")?,
                    key,
                })
            }
            _ => Err(self.error_at(
                start,
                format!(
                    "an operator after label key '{key}' \
                     (==, !=, in, not in, contains, starts with, ends with)"
                ),
            )),
        }
    }

    /// The `with` of `starts with`, or the `in` of `not in`.
    fn second_word(&mut self, first: &str, second: &str) -> Result<(), SelectorError> {
        self.skip_ws();
        let start = self.pos;
        if self.word() == second {
            Ok(())
        } else {
            Err(self.error_at(start, format!("'{second}' after '{first}'")))
        }
    }

    /// A quoted string, the operand of `after`.
    fn string(&mut self, after: &str) -> Result<String, SelectorError> {
        self.skip_ws();
        self.quoted()?
            .ok_or_else(|| self.error_here(format!("a quoted string after '{after}'")))
    }

    /// A quoted string if one starts here; `None` (consuming nothing) otherwise.
    fn quoted(&mut self) -> Result<Option<String>, SelectorError> {
        let Some(quote @ (b'"' | b'\'')) = self.peek() else {
            return Ok(None);
        };
        let open = self.pos;
        let body = open + 1;
        let Some(len) = self.bytes[body..].iter().position(|&b| b == quote) else {
            return Err(self.error_at(
                open,
                format!(
                    "a closing {} for the string opened here",
                    if quote == b'"' { "'\"'" } else { "\"'\"" }
                ),
            ));
        };
        self.pos = body + len + 1;
        Ok(Some(self.source[body..body + len].to_string()))
    }

    /// `{ "a", "b" }` after `in` / `not in`; `{}` is the empty set and a
    /// trailing comma is allowed, as in libcalico-go.
    fn set(&mut self, after: &str) -> Result<ValueSet, SelectorError> {
        self.skip_ws();
        if !self.eat("{") {
            return Err(self.error_here(format!("'{{' after '{after}'")));
        }
        let mut members = Vec::new();
        loop {
            self.skip_ws();
            if self.eat("}") {
                return Ok(members.into_iter().collect());
            }
            let Some(member) = self.quoted()? else {
                return Err(self.error_here("a quoted string or '}' in the set"));
            };
            members.push(member);
            self.skip_ws();
            if self.eat("}") {
                return Ok(members.into_iter().collect());
            }
            if !self.eat(",") {
                return Err(self.error_here("',' or '}' in the set"));
            }
        }
    }
}
