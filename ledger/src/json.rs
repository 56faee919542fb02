//! How the verifier reads the payloads it interprets
//! (`docs/journal-format.md`, section 1, "Payloads").
//!
//! - A payload is read as one JSON text (RFC 8259): UTF-8, no byte-order
//!   mark, JSON whitespace allowed around it, nothing after it.
//! - It must be an object. A derived struct would also accept an array of
//!   its fields in order (`["m", 3]` for `{"mission": "m", "task": 3}`),
//!   which no other reader would take for the same thing; [`object`]
//!   refuses anything but an object, at every level it is used.
//! - A name the rule uses must appear once; other names are ignored (and
//!   may repeat). Integers are number tokens without fraction or exponent
//!   (`-0` counts as a fraction-less float, so it is refused too) within
//!   the field's range.
//! - Keys in payloads are exactly 64 lower-case hex digits ([`public_key`]).

use std::fmt;
use std::marker::PhantomData;

use serde::de::value::MapAccessDeserializer;
use serde::de::{Deserialize, DeserializeOwned, Deserializer, MapAccess, Visitor};

/// A `T` that was written as a JSON object (never as an array).
pub(crate) struct Obj<T>(pub T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct ObjVisitor<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for ObjVisitor<T> {
            type Value = Obj<T>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Obj<T>, A::Error> {
                T::deserialize(MapAccessDeserializer::new(map)).map(Obj)
            }
        }
        deserializer.deserialize_map(ObjVisitor(PhantomData))
    }
}

/// Reads `bytes` as one JSON object into `T` (see the module docs).
pub(crate) fn object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, serde_json::Error> {
    // The whole text is UTF-8, including strings the rule does not read
    // (which serde_json alone would skip without looking).
    let text = std::str::from_utf8(bytes)
        .map_err(|e| <serde_json::Error as serde::de::Error>::custom(format!("not UTF-8: {e}")))?;
    serde_json::from_str::<Obj<T>>(text).map(|o| o.0)
}

/// A batch posting's inner payload, read without keeping its text (which
/// would need serde_json's `raw_value`, a feature that changes serde_json
/// for every crate of the workspace): decoded into a
/// [`serde_json::Value`], refusing any object that repeats a name, at any
/// level, since a `Value` would silently keep the last one. It is then
/// read by [`object_of`] exactly as an entry's payload is.
pub(crate) struct Unique(pub serde_json::Value);

impl<'de> Deserialize<'de> for Unique {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error as _, SeqAccess};
        use serde_json::{Map, Number, Value};
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Unique;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a JSON value")
            }
            fn visit_bool<E>(self, v: bool) -> Result<Unique, E> {
                Ok(Unique(Value::Bool(v)))
            }
            fn visit_i64<E>(self, v: i64) -> Result<Unique, E> {
                Ok(Unique(Value::Number(v.into())))
            }
            fn visit_u64<E>(self, v: u64) -> Result<Unique, E> {
                Ok(Unique(Value::Number(v.into())))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Unique, E> {
                Number::from_f64(v).map(|n| Unique(Value::Number(n))).ok_or_else(|| E::custom("a number out of range"))
            }
            fn visit_str<E>(self, v: &str) -> Result<Unique, E> {
                Ok(Unique(Value::String(v.to_owned())))
            }
            fn visit_string<E>(self, v: String) -> Result<Unique, E> {
                Ok(Unique(Value::String(v)))
            }
            fn visit_unit<E>(self) -> Result<Unique, E> {
                Ok(Unique(Value::Null))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Unique, A::Error> {
                let mut items = Vec::new();
                while let Some(Unique(item)) = seq.next_element()? {
                    items.push(item);
                }
                Ok(Unique(Value::Array(items)))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Unique, A::Error> {
                let mut object = Map::new();
                while let Some(name) = map.next_key::<String>()? {
                    let Unique(value) = map.next_value()?;
                    if object.insert(name.clone(), value).is_some() {
                        return Err(A::Error::custom(format!("duplicate field `{name}`")));
                    }
                }
                Ok(Unique(Value::Object(object)))
            }
        }
        deserializer.deserialize_any(V)
    }
}

/// Reads a decoded value as one JSON object into `T`, as [`object`] reads
/// bytes (objects only, integers only where `T` wants integers).
pub(crate) fn object_of<T: DeserializeOwned>(value: serde_json::Value) -> Result<T, serde_json::Error> {
    serde_json::from_value::<Obj<T>>(value).map(|o| o.0)
}

/// Decodes a key field: exactly 64 lower-case hex digits, a valid key
/// under the strict rules of section 1. Upper case, whitespace or any
/// other length is refused (`hex` alone would take upper case, and the
/// key parser trims whitespace).
pub(crate) fn public_key(text: &str) -> Result<[u8; 32], String> {
    let bytes = lower_hex(text)
        .filter(|b| b.len() == 32)
        .ok_or_else(|| format!("`{}` is not a public key: expected 64 lower-case hex digits", shown(text)))?;
    let mut key = [0u8; 32];
    key.copy_from_slice(&bytes);
    identity::PublicKey::from_bytes(&key).map(|k| k.to_bytes()).map_err(|e| format!("{e}"))
}

/// Decodes lower-case hex (an even number of `0-9a-f`), or `None`.
pub(crate) fn lower_hex(text: &str) -> Option<Vec<u8>> {
    if !text.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)) {
        return None;
    }
    hex::decode(text).ok()
}

/// `text` cut for a message.
fn shown(text: &str) -> String {
    const SHOWN: usize = 80;
    match text.char_indices().nth(SHOWN) {
        Some((at, _)) => format!("{}…", &text[..at]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(serde::Deserialize, Debug, PartialEq)]
    struct Two {
        a: u64,
        b: Option<String>,
    }

    #[test]
    fn objects_only_once_each_integers_only() {
        assert_eq!(object::<Two>(br#" {"a": 1, "x": [1, 2], "x": 3} "#).ok(), Some(Two { a: 1, b: None }));
        assert_eq!(object::<Two>(br#"{"a": 1, "b": null}"#).ok(), Some(Two { a: 1, b: None }));
        for bad in [
            &br#"[1, "s"]"#[..],
            br#"{"a": 1, "a": 2}"#,
            br#"{"a": 1.0}"#,
            br#"{"a": 1e2}"#,
            br#"{"a": -0}"#,
            br#"{"a": -1}"#,
            br#"{"a": 18446744073709551616}"#,
            br#"{"a": "1"}"#,
            b"\xef\xbb\xbf{\"a\": 1}",
            br#"{"a": 1} x"#,
            br#"{"a": 1}{}"#,
            br#"{"b": "s"}"#,
            br#"{"a": 1, "b": "\ud800"}"#,
            b"{\"a\": 1, \"b\": \"\xff\"}",
            br#"{"a": 1, "b": 5}"#,
        ] {
            assert!(object::<Two>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
        // Fields the rule does not use are checked for JSON syntax only:
        // lone surrogate escapes, numbers of any size and any depth pass
        // there. The payload as a whole must still be UTF-8.
        let deep = format!("{{\"a\": 1, \"x\": {}{}}}", "[".repeat(10_000), "]".repeat(10_000));
        for ignored in [
            &br#"{"a": 1, "x": "\ud800"}"#[..],
            br#"{"a": 1, "x": 1e400, "y": 184467440737095516160, "z": -0.5}"#,
            deep.as_bytes(),
        ] {
            assert!(object::<Two>(ignored).is_ok(), "{}", String::from_utf8_lossy(ignored));
        }
        for bad in [
            &b"{\"a\": 1, \"x\": \"\xff\"}"[..],
            br#"{"a": 1, "x": "\q"}"#,
            b"{\"a\": 1, \"x\": \"\x01\"}",
            br#"{"a": 1, "x": 01}"#,
            br#"{"a": 1, "x": [1,]}"#,
        ] {
            assert!(object::<Two>(bad).is_err(), "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn keys_are_lower_case_hex_only() {
        let key = identity::Keypair::from_secret_bytes(identity::Role::Agent, &[9; 32]).public();
        let text = key.to_hex();
        assert_eq!(public_key(&text), Ok(key.to_bytes()));
        for bad in [text.to_uppercase(), format!(" {text}"), format!("{text}\n"), text[..62].to_owned(), String::new()]
        {
            assert!(public_key(&bad).is_err(), "{bad:?}");
        }
        assert_eq!(lower_hex("00ff"), Some(vec![0, 255]));
        assert_eq!(lower_hex("00FF"), None);
        assert_eq!(lower_hex("0"), None);
    }
}
