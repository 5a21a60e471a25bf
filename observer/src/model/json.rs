//! A typed record's JSON text, written straight into one buffer: the store
//! keeps this text for every record, so it is made once per record on the
//! sink thread and its cost is the agent's per-event cost.
//!
//! Input: a record's time, event name and `Serialize` value (a struct or
//! map of scalars, string lists and flattened parts, as the typed records
//! are). Output: `{"time":..,"event.name":..,<the record's entries>}`, the
//! text `serde_json` gives for the same value, byte for byte. Invariant: a
//! shape this writer does not handle (an enum variant with fields, a map
//! key that is not a string, the record not being a struct or map) is an
//! error here, and [`record`] then serialises the whole record with
//! `serde_json` instead, so the text never differs.
//!
//! What makes it cheaper than `serde_json::to_string`: one buffer sized
//! for a record up front; the time written into it, not into a `String`
//! first; strings scanned for characters to escape in one pass the
//! compiler vectorises (record names and values almost never hold one),
//! instead of byte by byte; inodes and devices (`collect_str`) written in
//! place.
use std::{fmt, time::SystemTime};

use serde::{
    Serialize, Serializer,
    ser::{self, Impossible},
};

/// Bytes reserved for a record's text: a file access is 800-1,000.
const RECORD_CAPACITY: usize = 1536;

/// `{"time":<RFC 3339>,"event.name":<event_name>,<record's entries>}`:
/// the JSON of `{time, event.name, #[serde(flatten)] record}`.
pub fn record<T: Serialize + ?Sized>(time: SystemTime, event_name: &str, record: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::with_capacity(RECORD_CAPACITY);
    out.extend_from_slice(b"{\"time\":\"");
    let start = out.len();
    // As `model::rfc3339`: an instant it cannot format is `""` (the format
    // checks the year before it writes anything; cut back all the same).
    // (`time` panics converting an instant past year 9999, as there.)
    if time::OffsetDateTime::from(time).format_into(&mut out, &time::format_description::well_known::Rfc3339).is_err() {
        out.truncate(start);
    }
    out.extend_from_slice(b"\",\"event.name\":");
    write_str(&mut out, event_name);
    match record.serialize(Flat { out: &mut out }) {
        Ok(()) => Ok(String::from_utf8(out).unwrap_or_default()),
        Err(_) => {
            #[derive(Serialize)]
            struct Whole<'a, T: Serialize + ?Sized> {
                time: String,
                #[serde(rename = "event.name")]
                event_name: &'a str,
                #[serde(flatten)]
                record: &'a T,
            }
            serde_json::to_string(&Whole { time: super::rfc3339(time), event_name, record })
        }
    }
}

/// This writer declines a shape: the caller falls back to `serde_json`.
#[derive(Debug)]
pub struct Unsupported(String);

impl fmt::Display for Unsupported {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}
impl std::error::Error for Unsupported {}
impl ser::Error for Unsupported {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        Self(msg.to_string())
    }
}

fn unsupported<T>(what: &str) -> Result<T, Unsupported> {
    Err(Unsupported(format!("{what}: left to serde_json")))
}

/// Whether `b` holds a byte JSON strings must escape (`"`, `\`, controls).
/// Short texts (names, most values) by table; longer ones with no early
/// exit, so the loop is vectorised.
#[inline]
fn needs_escape(b: &[u8]) -> bool {
    static ESCAPE: [bool; 256] = {
        let mut t = [false; 256];
        let mut i = 0;
        while i < 0x20 {
            t[i] = true;
            i += 1;
        }
        t[b'"' as usize] = true;
        t[b'\\' as usize] = true;
        t
    };
    if b.len() <= 32 {
        return b.iter().any(|&c| ESCAPE[usize::from(c)]);
    }
    b.iter().fold(false, |acc, &c| acc | (c < 0x20) | (c == b'"') | (c == b'\\'))
}

/// `s` as a JSON string, escaped as `serde_json` escapes it.
#[inline]
fn write_str(out: &mut Vec<u8>, s: &str) {
    out.reserve(s.len() + 2);
    out.push(b'"');
    write_str_contents(out, s.as_bytes());
    out.push(b'"');
}

#[inline]
fn write_str_contents(out: &mut Vec<u8>, b: &[u8]) {
    if !needs_escape(b) {
        out.extend_from_slice(b);
        return;
    }
    escape_into(out, b);
}

#[cold]
fn escape_into(out: &mut Vec<u8>, b: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    for &c in b {
        match c {
            b'"' => out.extend_from_slice(b"\\\""),
            b'\\' => out.extend_from_slice(b"\\\\"),
            0x08 => out.extend_from_slice(b"\\b"),
            0x09 => out.extend_from_slice(b"\\t"),
            0x0a => out.extend_from_slice(b"\\n"),
            0x0c => out.extend_from_slice(b"\\f"),
            0x0d => out.extend_from_slice(b"\\r"),
            c if c < 0x20 => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(c >> 4)], HEX[usize::from(c & 0xf)]]),
            c => out.push(c),
        }
    }
}

/// A scalar `serde_json` writes (numbers, `char`, bytes), written by it.
fn delegate<T: Serialize + ?Sized>(out: &mut Vec<u8>, v: &T) -> Result<(), Unsupported> {
    serde_json::to_writer(out, v).map_err(|e| Unsupported(e.to_string()))
}

/// The record: its entries continue the object the time and event name
/// opened.
struct Flat<'a> {
    out: &'a mut Vec<u8>,
}

macro_rules! declined {
    ($($f:ident($($t:ty),*)),* $(,)?) => {
        $(fn $f(self, $(_: $t),*) -> Result<Self::Ok, Unsupported> { unsupported(stringify!($f)) })*
    };
}

impl<'a> Serializer for Flat<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    declined!(
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
        serialize_none(),
        serialize_unit(),
        serialize_unit_struct(&'static str),
        serialize_unit_variant(&'static str, u32, &'static str),
    );
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unsupported> {
        unsupported("an optional record")
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        unsupported("a variant record")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        unsupported("a list record")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        unsupported("a tuple record")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Unsupported> {
        unsupported("a tuple record")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a variant record")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, Unsupported> {
        Ok(Object { out: self.out, first: false })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, Unsupported> {
        Ok(Object { out: self.out, first: false })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a variant record")
    }
}

/// An object's entries (its `{` already written); `}` at its end.
struct Object<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl Object<'_> {
    fn comma(&mut self) {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
    }
}

impl ser::SerializeMap for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Unsupported> {
        self.comma();
        key.serialize(Key { out: self.out })?;
        self.out.push(b':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Unsupported> {
        value.serialize(Value { out: self.out })
    }
    fn end(self) -> Result<(), Unsupported> {
        self.out.push(b'}');
        Ok(())
    }
}

impl ser::SerializeStruct for Object<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Unsupported> {
        self.comma();
        write_str(self.out, key);
        self.out.push(b':');
        value.serialize(Value { out: self.out })
    }
    fn end(self) -> Result<(), Unsupported> {
        self.out.push(b'}');
        Ok(())
    }
}

/// A list's items (its `[` already written); `]` at its end.
struct List<'a> {
    out: &'a mut Vec<u8>,
    first: bool,
}

impl ser::SerializeSeq for List<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        if !std::mem::take(&mut self.first) {
            self.out.push(b',');
        }
        v.serialize(Value { out: self.out })
    }
    fn end(self) -> Result<(), Unsupported> {
        self.out.push(b']');
        Ok(())
    }
}

impl ser::SerializeTuple for List<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<(), Unsupported> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for List<'_> {
    type Ok = ();
    type Error = Unsupported;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, v: &T) -> Result<(), Unsupported> {
        ser::SerializeSeq::serialize_element(self, v)
    }
    fn end(self) -> Result<(), Unsupported> {
        ser::SerializeSeq::end(self)
    }
}

/// An object key: a string (`serde_json` turns other keys into strings;
/// those are left to it).
struct Key<'a> {
    out: &'a mut Vec<u8>,
}

impl Serializer for Key<'_> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = Impossible<(), Unsupported>;
    type SerializeTuple = Impossible<(), Unsupported>;
    type SerializeTupleStruct = Impossible<(), Unsupported>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Impossible<(), Unsupported>;
    type SerializeStruct = Impossible<(), Unsupported>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    declined!(
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
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Unsupported> {
        unsupported("an optional key")
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        unsupported("a variant key")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Unsupported> {
        unsupported("a list key")
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Unsupported> {
        unsupported("a tuple key")
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Unsupported> {
        unsupported("a tuple key")
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a variant key")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Unsupported> {
        unsupported("a map key")
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Unsupported> {
        unsupported("a struct key")
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a variant key")
    }
}

/// Any value inside the record.
struct Value<'a> {
    out: &'a mut Vec<u8>,
}

/// Text a `Display` writes, appended as is (escaped afterwards if needed).
struct Raw<'a>(&'a mut Vec<u8>);

impl fmt::Write for Raw<'_> {
    fn write_str(&mut self, s: &str) -> fmt::Result {
        self.0.extend_from_slice(s.as_bytes());
        Ok(())
    }
}

impl<'a> Serializer for Value<'a> {
    type Ok = ();
    type Error = Unsupported;
    type SerializeSeq = List<'a>;
    type SerializeTuple = List<'a>;
    type SerializeTupleStruct = List<'a>;
    type SerializeTupleVariant = Impossible<(), Unsupported>;
    type SerializeMap = Object<'a>;
    type SerializeStruct = Object<'a>;
    type SerializeStructVariant = Impossible<(), Unsupported>;

    fn serialize_bool(self, v: bool) -> Result<(), Unsupported> {
        self.out.extend_from_slice(if v { b"true" } else { b"false" });
        Ok(())
    }
    fn serialize_i8(self, v: i8) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_i16(self, v: i16) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_i32(self, v: i32) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_i64(self, v: i64) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_u8(self, v: u8) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_u16(self, v: u16) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_u32(self, v: u32) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_u64(self, v: u64) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_i128(self, v: i128) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_u128(self, v: u128) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_f32(self, v: f32) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_char(self, v: char) -> Result<(), Unsupported> {
        delegate(self.out, &v)
    }
    fn serialize_str(self, v: &str) -> Result<(), Unsupported> {
        write_str(self.out, v);
        Ok(())
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Unsupported> {
        delegate(self.out, v)
    }
    fn serialize_none(self) -> Result<(), Unsupported> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, v: &T) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Unsupported> {
        self.out.extend_from_slice(b"null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Unsupported> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Unsupported> {
        self.serialize_str(variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, v: &T) -> Result<(), Unsupported> {
        v.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Unsupported> {
        unsupported("a variant value")
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<List<'a>, Unsupported> {
        self.out.push(b'[');
        Ok(List { out: self.out, first: true })
    }
    fn serialize_tuple(self, len: usize) -> Result<List<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<List<'a>, Unsupported> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Unsupported> {
        unsupported("a variant value")
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Object<'a>, Unsupported> {
        self.out.push(b'{');
        Ok(Object { out: self.out, first: true })
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Object<'a>, Unsupported> {
        self.out.push(b'{');
        Ok(Object { out: self.out, first: true })
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Unsupported> {
        unsupported("a variant value")
    }
    /// In place (an inode, a device): no `String` per value.
    fn collect_str<T: fmt::Display + ?Sized>(self, v: &T) -> Result<(), Unsupported> {
        use fmt::Write as _;
        self.out.push(b'"');
        let start = self.out.len();
        write!(Raw(self.out), "{v}").map_err(|_| Unsupported("a Display failed".into()))?;
        if needs_escape(&self.out[start..]) {
            let text = self.out.split_off(start);
            write_str_contents(self.out, &text);
        }
        self.out.push(b'"');
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;

    use super::*;

    /// What `serde_json` gives for `{time, event.name, flatten record}`.
    fn reference<T: Serialize>(time: SystemTime, name: &str, r: &T) -> String {
        #[derive(Serialize)]
        struct Whole<'a, T: Serialize> {
            time: String,
            #[serde(rename = "event.name")]
            event_name: &'a str,
            #[serde(flatten)]
            record: &'a T,
        }
        serde_json::to_string(&Whole { time: crate::model::rfc3339(time), event_name: name, record: r }).unwrap()
    }

    #[derive(Serialize)]
    struct Shapes {
        #[serde(rename = "a.str")]
        s: String,
        #[serde(rename = "a.none")]
        none: Option<u32>,
        #[serde(rename = "a.num")]
        n: i64,
        #[serde(rename = "a.u")]
        u: u64,
        #[serde(rename = "a.f")]
        f: f64,
        #[serde(rename = "a.b")]
        b: bool,
        #[serde(rename = "a.list")]
        list: Vec<String>,
        #[serde(rename = "a.c")]
        c: char,
        #[serde(flatten)]
        map: BTreeMap<String, String>,
        #[serde(rename = "a.unit")]
        unit: (),
        #[serde(rename = "a.nested")]
        nested: BTreeMap<&'static str, (u8, bool)>,
        #[serde(rename = "a.display")]
        display: crate::model::records::Device,
    }

    fn shapes(s: &str) -> Shapes {
        Shapes {
            s: s.into(),
            none: None,
            n: -7,
            u: u64::MAX,
            f: 1.5,
            b: true,
            list: vec![s.into(), String::new()],
            c: '"',
            map: [(format!("k{s}"), s.to_owned())].into(),
            unit: (),
            nested: [("x", (1, false))].into(),
            display: crate::model::records::Device(u64::from(observer_common::kernel_dev(254, 1))),
        }
    }

    #[test]
    fn every_shape_as_serde_json_writes_it() {
        let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_764_000_000, 120_000_000);
        for s in ["plain", "quote \" back \\ slash", "ctl \u{1}\u{8}\t\n\u{c}\r\u{1f}\u{7f}", "é ☃ \u{10ffff}", ""] {
            assert_eq!(record(t, "e.name", &shapes(s)).unwrap(), reference(t, "e.name", &shapes(s)), "{s:?}");
        }
        for access in crate::model::records::samples::accesses() {
            assert_eq!(record(access.time, "nhi.credential.access", &access).unwrap(), reference(access.time, "nhi.credential.access", &access));
        }
    }

    #[test]
    fn shapes_it_declines_fall_back_to_serde_json() {
        #[derive(Serialize)]
        enum Tagged {
            A { x: u8 },
        }
        #[derive(Serialize)]
        struct R {
            #[serde(rename = "v")]
            v: Tagged,
            #[serde(flatten)]
            ints: BTreeMap<u32, u32>,
        }
        let r = R { v: Tagged::A { x: 1 }, ints: [(1, 2)].into() };
        let t = SystemTime::UNIX_EPOCH;
        assert_eq!(record(t, "e", &r).unwrap(), reference(t, "e", &r));
        assert!(r.serialize(Flat { out: &mut Vec::new() }).is_err(), "declined, so the fallback ran");
    }

    proptest! {
        #[test]
        fn any_text_is_escaped_as_serde_json_escapes_it(s in any::<String>(), nanos in 0u32..1_000_000_000) {
            let t = SystemTime::UNIX_EPOCH + std::time::Duration::new(1_764_000_000, nanos);
            prop_assert_eq!(record(t, "e", &shapes(&s)).unwrap(), reference(t, "e", &shapes(&s)));
        }
    }
}
