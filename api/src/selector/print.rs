//! The canonical printer: `Display` for [`Expr`].
//!
//! Single spaces around binary operators, `", "` between set members, `"` quotes
//! unless the value holds a `"` (then `'`), and parentheses only where
//! precedence needs them: an `||` inside `&&` or `!`, an `&&` inside `!`.
//! [`paren_depth`] reports how deeply those parentheses nest, so a tree that
//! would print deeper than the parser accepts can be refused up front.

use std::fmt::{self, Write};

use super::ast::Expr;

/// Where an expression is printed, which decides whether it needs parentheses.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    /// The whole selector, or directly inside parentheses.
    Top,
    /// An operand of `||`.
    Or,
    /// An operand of `&&`.
    And,
    /// The operand of `!`.
    Not,
}

fn needs_parens(expr: &Expr, context: Context) -> bool {
    match expr {
        Expr::And(operands) if operands.len() > 1 => context == Context::Not,
        Expr::Or(operands) if operands.len() > 1 => {
            matches!(context, Context::And | Context::Not)
        }
        _ => false,
    }
}

impl fmt::Display for Expr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_expr(self, Context::Top, f)
    }
}

fn write_expr(expr: &Expr, context: Context, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    if needs_parens(expr, context) {
        f.write_char('(')?;
        write_expr(expr, Context::Top, f)?;
        return f.write_char(')');
    }
    match expr {
        Expr::All => f.write_str("all()"),
        Expr::Global => f.write_str("global()"),
        Expr::Has(key) => write!(f, "has({key})"),
        Expr::Compare { key, op, value } => {
            write!(f, "{key} {} ", op.as_str())?;
            write_quoted(value, f)
        }
        Expr::In { key, values } | Expr::NotIn { key, values } => {
            let op = if matches!(expr, Expr::In { .. }) {
                "in"
            } else {
                "not in"
            };
            write!(f, "{key} {op} {{")?;
            for (i, value) in values.iter().enumerate() {
                if i > 0 {
                    f.write_str(", ")?;
                }
                write_quoted(value, f)?;
            }
            f.write_char('}')
        }
        Expr::Not(inner) => {
            f.write_char('!')?;
            write_expr(inner, Context::Not, f)
        }
        Expr::And(operands) => write_joined(operands, " && ", Context::And, Expr::All, f),
        Expr::Or(operands) => write_joined(
            operands,
            " || ",
            Context::Or,
            Expr::Not(Box::new(Expr::All)),
            f,
        ),
    }
}

/// Operands joined by a connective; a connective without operands prints as its identity.
fn write_joined(
    operands: &[Expr],
    connective: &str,
    context: Context,
    identity: Expr,
    f: &mut fmt::Formatter<'_>,
) -> fmt::Result {
    if operands.is_empty() {
        return write_expr(&identity, context, f);
    }
    for (i, operand) in operands.iter().enumerate() {
        if i > 0 {
            f.write_str(connective)?;
        }
        write_expr(operand, context, f)?;
    }
    Ok(())
}

fn write_quoted(value: &str, f: &mut fmt::Formatter<'_>) -> fmt::Result {
    let quote = if value.contains('"') { '\'' } else { '"' };
    f.write_char(quote)?;
    f.write_str(value)?;
    f.write_char(quote)
}

/// How deeply the parentheses of the printed form nest.
pub(super) fn paren_depth(expr: &Expr) -> usize {
    depth_in(expr, Context::Top)
}

fn depth_in(expr: &Expr, context: Context) -> usize {
    let own = usize::from(needs_parens(expr, context));
    let inner = match expr {
        Expr::Not(inner) => depth_in(inner, Context::Not),
        Expr::And(operands) => max_depth(operands, Context::And),
        Expr::Or(operands) => max_depth(operands, Context::Or),
        _ => 0,
    };
    own + inner
}

fn max_depth(operands: &[Expr], context: Context) -> usize {
    operands
        .iter()
        .map(|operand| depth_in(operand, context))
        .max()
        .unwrap_or(0)
}
