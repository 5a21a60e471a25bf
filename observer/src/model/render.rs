//! The one renderer: a typed record ([`super::records`]) becomes the flat
//! attribute list every output shows (the store's serialised column, JSON
//! lines, OTLP), through its `Serialize` derive, so an attribute's name and
//! type are decided by the record's declaration alone.
//!
//! Input: any [`TypedRecord`]. Output: a [`Record`]. Invariant: integers
//! stay integers (saturated at `i64::MAX`), string sequences become string
//! arrays, absent values (`None`, unit) leave the key out.
use std::{cell::RefCell, collections::HashSet, fmt};

use serde::{
    Serialize,
    ser::{self, Impossible},
};

use super::{
    record::{Record, Value},
    records::TypedRecord,
};

/// A typed record as a [`Record`].
pub fn render<T: TypedRecord>(r: &T) -> Record {
    let mut attributes = Vec::with_capacity(32);
    append(r, &mut attributes);
    Record {
        time: r.time(),
        event_name: T::EVENT_NAME,
        attributes,
    }
}

/// Appends the attributes of any flat `Serialize` struct (a record, or a
/// shared part of one such as a workload) to `out`.
pub fn append<T: Serialize + ?Sized>(r: &T, out: &mut Vec<(&'static str, Value)>) {
    // The records' derives only ever give structs and maps of scalars and
    // string lists, which never fail here; if a type change breaks that,
    // the record is counted (the attributes before the failure stay).
    if let Err(e) = r.serialize(Attributes { out, key: None }) {
        super::record::UNRENDERABLE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        tracing::debug!(error = %e, "record attributes not rendered");
    }
}

/// An attribute name as `&'static str`, for a name that arrives as a map
/// key (the records' own names arrive as struct field names, already
/// static: `super::flat`; a map's keys and the identity facts read back
/// from stored text come here). Each
/// distinct name is kept once per thread (a bounded set: the schema's
/// names and the identity facts' names, which are static too). A small
/// cache by the text's address answers the repeated names of the hot path
/// without hashing them; a hit is checked against the text, so a reused
/// address can never give another name.
pub(super) fn intern(key: &str) -> &'static str {
    const SLOTS: usize = 256;
    struct Names {
        by_address: [(usize, &'static str); SLOTS],
        all: HashSet<&'static str>,
    }
    thread_local! {
        static NAMES: RefCell<Names> =
            RefCell::new(Names { by_address: [(0, ""); SLOTS], all: HashSet::new() });
    }
    NAMES.with(|names| {
        let mut names = names.borrow_mut();
        let address = key.as_ptr() as usize;
        let slot = (address >> 3) % SLOTS;
        let (seen, name) = names.by_address[slot];
        if seen == address && name == key {
            return name;
        }
        let name = match names.all.get(key) {
            Some(k) => *k,
            None => {
                let k = permanent(key);
                names.all.insert(k);
                k
            }
        };
        names.by_address[slot] = (address, name);
        name
    })
}

/// A text kept for the process's life, once per distinct text: the
/// catalog's rule names and kinds, the host's name, attribute names (the
/// slow path of [`intern`]). Records then hold these as `&'static str`
/// (in a `Cow`): no copy per record, and no reference count either (an
/// `Arc<str>` per rule name, kind and host name made the chain slower in
/// wall-clock though fewer in instructions: each count is an atomic
/// read-modify-write, docs/design.md "Pipeline"). Bounded: a reload adds
/// only names not seen before.
pub fn permanent(text: &str) -> &'static str {
    static TEXTS: std::sync::Mutex<Option<HashSet<&'static str>>> = std::sync::Mutex::new(None);
    let mut texts = TEXTS.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let texts = texts.get_or_insert_with(HashSet::new);
    if let Some(t) = texts.get(text) {
        return t;
    }
    let t: &'static str = Box::leak(text.to_owned().into_boxed_str());
    texts.insert(t);
    t
}

/// A record that cannot be rendered (here, or as JSON text by
/// `super::json`).
///
/// A boxed text, not a `String`: `Result<(), Error>` then fits two
/// registers, and every serializer call returns it without a trip through
/// memory (about a hundred calls a record).
#[derive(Debug)]
pub struct Error(pub(super) Box<str>);

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Error {}
impl ser::Error for Error {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string().into())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Error> {
    Err(Error(format!("a record attribute cannot be {what}").into()))
}

/// The record level: a struct or a map of attributes.
struct Attributes<'a> {
    out: &'a mut Vec<(&'static str, Value)>,
    key: Option<&'static str>,
}

impl Attributes<'_> {
    fn put<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        if let Some(v) = value.serialize(Scalar)? {
            self.out.push((key, v));
        }
        Ok(())
    }
}


impl<'a> ser::Serializer for Attributes<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Self;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), Error>;

    refuse!(unsupported("a record");
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_str(&str),
        serialize_bytes(&[u8]),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_none(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        unsupported("an externally tagged variant")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        unsupported("a list")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        unsupported("a tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        unsupported("a tuple")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        unsupported("a tuple")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        unsupported("an externally tagged variant")
    }
}

impl ser::SerializeStruct for Attributes<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(
        &mut self,
        key: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        self.put(key, value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

impl ser::SerializeMap for Attributes<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.key = Some(key.serialize(Key)?);
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        let key = self
            .key
            .take()
            .ok_or_else(|| Error("a value without a key".into()))?;
        self.put(key, value)
    }
    fn end(self) -> Result<(), Error> {
        Ok(())
    }
}

/// An attribute's name.
struct Key;

impl ser::Serializer for Key {
    type Ok = &'static str;
    type Error = Error;
    type SerializeSeq = Impossible<&'static str, Error>;
    type SerializeTuple = Impossible<&'static str, Error>;
    type SerializeTupleStruct = Impossible<&'static str, Error>;
    type SerializeTupleVariant = Impossible<&'static str, Error>;
    type SerializeMap = Impossible<&'static str, Error>;
    type SerializeStruct = Impossible<&'static str, Error>;
    type SerializeStructVariant = Impossible<&'static str, Error>;

    fn serialize_str(self, v: &str) -> Result<&'static str, Error> {
        Ok(intern(v))
    }

    refuse!(unsupported("a record");
        serialize_bool(bool),
        serialize_i8(i8),
        serialize_i16(i16),
        serialize_i32(i32),
        serialize_i64(i64),
        serialize_u8(u8),
        serialize_u16(u16),
        serialize_u32(u32),
        serialize_u64(u64),
        serialize_f32(f32),
        serialize_f64(f64),
        serialize_char(char),
        serialize_bytes(&[u8]),
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<&'static str, Error> {
        unsupported("a key")
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<&'static str, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<&'static str, Error> {
        unsupported("a key")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        unsupported("a key")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        unsupported("a key")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        unsupported("a key")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        unsupported("a key")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        unsupported("a key")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        unsupported("a key")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        unsupported("a key")
    }
}

/// An attribute's value; `None` leaves the key out.
struct Scalar;

fn int<T: TryInto<i64>>(v: T) -> Result<Option<Value>, Error> {
    Ok(Some(Value::Int(v.try_into().unwrap_or(i64::MAX))))
}

impl ser::Serializer for Scalar {
    type Ok = Option<Value>;
    type Error = Error;
    type SerializeSeq = Strings;
    type SerializeTuple = Impossible<Option<Value>, Error>;
    type SerializeTupleStruct = Impossible<Option<Value>, Error>;
    type SerializeTupleVariant = Impossible<Option<Value>, Error>;
    type SerializeMap = Impossible<Option<Value>, Error>;
    type SerializeStruct = Impossible<Option<Value>, Error>;
    type SerializeStructVariant = Impossible<Option<Value>, Error>;

    fn serialize_bool(self, v: bool) -> Result<Option<Value>, Error> {
        Ok(Some(Value::Bool(v)))
    }
    fn serialize_i8(self, v: i8) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_i16(self, v: i16) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_i32(self, v: i32) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_i64(self, v: i64) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_u8(self, v: u8) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_u16(self, v: u16) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_u32(self, v: u32) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_u64(self, v: u64) -> Result<Option<Value>, Error> {
        int(v)
    }
    fn serialize_f32(self, _: f32) -> Result<Option<Value>, Error> {
        unsupported("a float")
    }
    fn serialize_f64(self, _: f64) -> Result<Option<Value>, Error> {
        unsupported("a float")
    }
    fn serialize_char(self, v: char) -> Result<Option<Value>, Error> {
        Ok(Some(Value::Str(v.to_string())))
    }
    fn serialize_str(self, v: &str) -> Result<Option<Value>, Error> {
        Ok(Some(Value::Str(v.to_owned())))
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<Option<Value>, Error> {
        unsupported("bytes")
    }
    fn serialize_none(self) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<Option<Value>, Error> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<Option<Value>, Error> {
        Ok(None)
    }
    fn serialize_unit_variant(
        self,
        _: &'static str,
        _: u32,
        name: &'static str,
    ) -> Result<Option<Value>, Error> {
        Ok(Some(Value::Str(name.to_owned())))
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        v: &T,
    ) -> Result<Option<Value>, Error> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<Option<Value>, Error> {
        unsupported("a variant with data")
    }
    fn serialize_seq(self, len: Option<usize>) -> Result<Strings, Error> {
        Ok(Strings(Vec::with_capacity(len.unwrap_or(0))))
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        unsupported("a tuple")
    }
    fn serialize_tuple_struct(
        self,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleStruct, Error> {
        unsupported("a tuple")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        unsupported("a tuple")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        unsupported("a nested map")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        unsupported("a nested struct")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        unsupported("a variant with data")
    }
}

/// A string array (OpenTelemetry `string[]`).
struct Strings(Vec<String>);

impl ser::SerializeSeq for Strings {
    type Ok = Option<Value>;
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Error> {
        match v.serialize(Scalar)? {
            Some(Value::Str(s)) => {
                self.0.push(s);
                Ok(())
            }
            _ => unsupported("a list of anything but strings"),
        }
    }
    fn end(self) -> Result<Option<Value>, Error> {
        Ok(Some(Value::StrList(self.0)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::records::samples;

    /// One copy per distinct text, whoever asks and from which thread.
    #[test]
    fn permanent_texts_are_kept_once() {
        let a = permanent(&String::from("permanent-test-rule"));
        let b = std::thread::spawn(|| permanent(&String::from("permanent-test-rule"))).join().unwrap();
        let c = permanent("permanent-test-other");
        assert_eq!((a, c), ("permanent-test-rule", "permanent-test-other"));
        assert!(std::ptr::eq(a, b), "a second copy");
        assert!(!std::ptr::eq(a, c));
        // The attribute-name interner leaks through it too.
        assert!(std::ptr::eq(intern(&String::from("permanent-test-rule")), a));
    }

    #[test]
    fn values_keep_their_types_and_absent_keys_are_left_out() {
        let mut c = samples::connection();
        c.tls.as_mut().expect("tls").alpn.clear();
        c.quic_version = None;
        let r = render(&c);
        assert_eq!(r.event_name, crate::model::EVENT_CONNECTION);
        let get = |k: &str| {
            r.attributes
                .iter()
                .find(|(x, _)| *x == k)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(get("server.port"), Some(Value::Int(443)));
        assert_eq!(get("nhi.server_name.seen"), Some(Value::Bool(true)));
        assert_eq!(
            get("nhi.tls.offered_versions"),
            Some(Value::StrList(vec!["1.3".into(), "1.2".into()]))
        );
        assert_eq!(get("nhi.tls.alpn"), None);
        assert_eq!(get("nhi.quic.version"), None);
        let mut stats = samples::stats();
        stats.usage_destinations_dropped = u64::MAX;
        let r = render(&stats);
        assert!(
            r.attributes
                .contains(&("nhi.agent.usage.destinations_dropped", Value::Int(i64::MAX)))
        );
        // Names are unique within a record.
        let mut names: Vec<&str> = render(&samples::accesses()[0])
            .attributes
            .iter()
            .map(|(k, _)| *k)
            .collect();
        let n = names.len();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), n);
    }

    #[test]
    fn an_interned_name_is_its_text_whatever_address_it_came_from() {
        let mut s = String::from("nhi.aws.profile");
        let a = intern(&s);
        assert_eq!(a, "nhi.aws.profile");
        // The same address, another text.
        s.replace_range(.., "nhi.aws.account");
        assert_eq!(intern(&s), "nhi.aws.account");
        // Another address, the same text: the same interned name.
        let t = String::from("nhi.aws.profile");
        assert!(std::ptr::eq(intern(&t), a));
    }
}
