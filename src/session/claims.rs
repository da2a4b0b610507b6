//! The user's claims as a session keeps them: compact JSON text, parsed only on demand.

use std::fmt;
use std::marker::PhantomData;
use std::sync::OnceLock;

use serde::de::{DeserializeOwned, DeserializeSeed, IgnoredAny, MapAccess, Visitor};
use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::{Map, Value};

/// The claims of a session.
///
/// Kept as one string of JSON rather than a `serde_json::Map`: a map of ten short claims
/// costs about 1.2 kB of heap (a B-tree node with room for eleven entries, and a small
/// allocation per key and per string value), the same claims as text about 300 bytes, and
/// a memory store holds a session per signed-in browser. Reading one claim
/// ([`get`](Self::get)) or all of them into a type of the app
/// ([`deserialize_into`](Self::deserialize_into)) scans the text without building the map;
/// the map is built once, and kept, only when [`map`](Self::map) is asked for it
/// ([`Session::claims`](super::Session::claims)).
///
/// Serialized as a JSON object (a map in any serde format), so the stored form of a
/// session is what it was with a map.
#[derive(Clone, Default)]
pub(crate) struct Claims {
    /// A JSON object; empty (no allocation) for no claims.
    json: Box<str>,
    map: OnceLock<Map<String, Value>>,
}

impl Claims {
    pub(crate) fn from_map(map: &Map<String, Value>) -> Self {
        let json = if map.is_empty() {
            Box::default()
        } else {
            // A map of JSON values always serializes.
            serde_json::to_string(map)
                .unwrap_or_default()
                .into_boxed_str()
        };
        Claims {
            json,
            map: OnceLock::new(),
        }
    }

    /// The compact JSON text ("" for no claims): the same for the same claims however the
    /// session was stored and read, since it is always written from the parsed map.
    pub(crate) fn as_json(&self) -> &str {
        &self.json
    }

    /// The claims as a map, built on first use and kept.
    pub(crate) fn map(&self) -> &Map<String, Value> {
        self.map.get_or_init(|| self.parse())
    }

    /// The claims as a new map, without keeping it.
    fn parse(&self) -> Map<String, Value> {
        if self.json.is_empty() {
            return Map::new();
        }
        serde_json::from_str(&self.json).unwrap_or_default()
    }

    /// One claim, deserialized; `None` when absent or of another type.
    pub(crate) fn get<T: DeserializeOwned>(&self, name: &str) -> Option<T> {
        if let Some(map) = self.map.get() {
            return map.get(name).and_then(|v| T::deserialize(v).ok());
        }
        if self.json.is_empty() {
            return None;
        }
        let mut de = serde_json::Deserializer::from_str(&self.json);
        de.deserialize_map(FindClaim(name, PhantomData))
            .ok()
            .flatten()
    }

    /// All the claims deserialized into `T`.
    pub(crate) fn deserialize_into<T: DeserializeOwned>(&self) -> Result<T, serde_json::Error> {
        serde_json::from_str(if self.json.is_empty() {
            "{}"
        } else {
            &self.json
        })
    }
}

impl Serialize for Claims {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self.map.get() {
            Some(map) => map.serialize(serializer),
            None => self.parse().serialize(serializer),
        }
    }
}

impl<'de> Deserialize<'de> for Claims {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        Ok(Claims::from_map(&Map::deserialize(deserializer)?))
    }
}

/// Deserializes the value of the member `.0` of a JSON object, skipping the others.
struct FindClaim<'n, T>(&'n str, PhantomData<T>);

impl<'de, T: DeserializeOwned> Visitor<'de> for FindClaim<'_, T> {
    type Value = Option<T>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Option<T>, A::Error> {
        let mut found = None;
        // The object is read to its end (the deserializer checks it is well-formed).
        while let Some(hit) = map.next_key_seed(KeyIs(self.0))? {
            if hit && found.is_none() {
                found = Some(map.next_value::<T>()?);
            } else {
                map.next_value::<IgnoredAny>()?;
            }
        }
        Ok(found)
    }
}

/// Whether a key is the one looked for, without allocating it.
struct KeyIs<'n>(&'n str);

impl<'de> DeserializeSeed<'de> for KeyIs<'_> {
    type Value = bool;

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<bool, D::Error> {
        deserializer.deserialize_str(self)
    }
}

impl Visitor<'_> for KeyIs<'_> {
    type Value = bool;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a claim name")
    }

    fn visit_str<E>(self, v: &str) -> Result<bool, E> {
        Ok(v == self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn claims(v: Value) -> Claims {
        match v {
            Value::Object(map) => Claims::from_map(&map),
            _ => unreachable!(),
        }
    }

    #[test]
    fn reads_claims_without_building_the_map() {
        let c = claims(json!({
            "sub": "alice", "n": 3, "ok": true, "nested": {"a": [1, 2]}, "esc\"aped": "x",
            "email": "alice@example.com",
        }));
        assert_eq!(c.get::<String>("sub").as_deref(), Some("alice"));
        assert_eq!(c.get::<u32>("n"), Some(3));
        assert_eq!(c.get::<bool>("ok"), Some(true));
        assert_eq!(c.get::<String>("esc\"aped").as_deref(), Some("x"));
        assert_eq!(c.get::<Value>("nested"), Some(json!({"a": [1, 2]})));
        assert_eq!(
            c.get::<String>("email").as_deref(),
            Some("alice@example.com")
        );
        assert_eq!(c.get::<String>("missing"), None);
        assert_eq!(c.get::<u32>("sub"), None, "another type");
        assert!(c.map.get().is_none(), "nothing kept");

        #[derive(Deserialize)]
        struct Mine {
            sub: String,
            n: u8,
        }
        let mine: Mine = c.deserialize_into().unwrap();
        assert_eq!((mine.sub.as_str(), mine.n), ("alice", 3));
        assert!(c.map.get().is_none());

        assert_eq!(c.map()["sub"], "alice");
        assert_eq!(c.map().len(), 6);
        assert_eq!(c.get::<String>("sub").as_deref(), Some("alice"));
    }

    #[test]
    fn no_claims() {
        let c = Claims::default();
        assert!(c.map().is_empty());
        assert_eq!(Claims::default().get::<String>("sub"), None);
        assert_eq!(
            Claims::default()
                .deserialize_into::<Map<String, Value>>()
                .unwrap(),
            Map::new()
        );
        assert_eq!(serde_json::to_string(&Claims::default()).unwrap(), "{}");
    }

    #[test]
    fn stored_as_a_json_object() {
        let v = json!({"sub": "alice", "aud": ["a", "b"], "exp": 17});
        let c = claims(v.clone());
        assert_eq!(serde_json::to_value(&c).unwrap(), v);
        let back: Claims = serde_json::from_value(v.clone()).unwrap();
        assert_eq!(back.get::<Vec<String>>("aud").unwrap(), ["a", "b"]);
        let _ = back.map();
        assert_eq!(serde_json::to_value(&back).unwrap(), v);
        assert!(serde_json::from_str::<Claims>("[1]").is_err());
    }
}
