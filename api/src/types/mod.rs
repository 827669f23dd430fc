//! Value types shared by several resources, each with its parsing rules and Calico's
//! serialised form: [`Port`], [`Protocol`], [`AsNumber`], [`Cidr`], [`GoDuration`].

mod asn;
mod cidr;
mod duration;
mod port;
mod protocol;

pub use asn::AsNumber;
pub use cidr::Cidr;
pub use duration::GoDuration;
pub use port::Port;
pub use protocol::Protocol;

/// Serde visitor glue: a type that is written as a string or an integer in documents.
macro_rules! string_or_number_serde {
    ($ty:ty, $expecting:literal) => {
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                struct V;
                impl serde::de::Visitor<'_> for V {
                    type Value = $ty;
                    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                        f.write_str($expecting)
                    }
                    fn visit_u64<E: serde::de::Error>(self, n: u64) -> Result<$ty, E> {
                        <$ty>::from_number(n).map_err(E::custom)
                    }
                    fn visit_i64<E: serde::de::Error>(self, n: i64) -> Result<$ty, E> {
                        match u64::try_from(n) {
                            Ok(n) => self.visit_u64(n),
                            Err(_) => Err(E::custom(format!("{n} is negative"))),
                        }
                    }
                    fn visit_f64<E: serde::de::Error>(self, n: f64) -> Result<$ty, E> {
                        <$ty>::from_float(n).map_err(E::custom)
                    }
                    fn visit_str<E: serde::de::Error>(self, s: &str) -> Result<$ty, E> {
                        s.parse::<$ty>().map_err(E::custom)
                    }
                }
                d.deserialize_any(V)
            }
        }
    };
}
pub(crate) use string_or_number_serde;
