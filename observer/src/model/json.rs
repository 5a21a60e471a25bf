//! The store's JSON text of a record: a `serde::Serializer` that writes
//! what `serde_json::to_string` writes, byte for byte, into a `String`.
//!
//! Why not serde_json itself: its string writer looks every byte of every
//! string up in an escape table, keys included (about 0.5 us of an access
//! record's 1.2 us on this project's machines; docs/design.md,
//! "Pipeline"). Here a string is first tested for a byte that needs an
//! escape 16 bytes at a time (a loop the compiler turns into vector
//! compares), and written whole when it has none, which is every key and
//! nearly every value; a string that has one is handed to serde_json
//! whole, as is every float, so escapes and number formats are
//! serde_json's own. Integers go through itoa, as in serde_json. The
//! output is built from `&str` pieces only; `unsafe` is used only to copy
//! them in after one capacity check ([`append`], [`field_name`],
//! [`copy`]).
//!
//! Struct field names (`&'static str`, the names a program declares; every
//! record attribute arrives as one, see `super::flat`) are written as they
//! are, without the test: they are never data.
//!
//! Input: any `Serialize` value (the records' derives: structs, flattened
//! parts, internally tagged enums, options, string lists, integers).
//! Output: compact JSON text. Invariant: the same text as
//! `serde_json::to_string` for every value both accept whose field names
//! need no escape (`json_text_is_serde_json_s` in `record.rs`, and the
//! tests here); map keys are what serde_json accepts as keys (strings,
//! chars, integers, booleans, finite floats, unit variants), anything else
//! is an error.
use serde::{
    Serialize,
    ser::{self, Impossible},
};

pub use super::render::Error;

/// `value` as compact JSON, appended to `out`.
pub fn write<T: Serialize + ?Sized>(out: &mut String, value: &T) -> Result<(), Error> {
    value.serialize(Json { out })
}

/// Whether a byte must be escaped in a JSON string, as serde_json decides:
/// control characters, `"` and `\`.
#[inline(always)]
fn escaped(b: u8) -> bool {
    // Non-short-circuit `|`: no branch per byte, so a block vectorises.
    (b < 0x20) | (b == b'"') | (b == b'\\')
}

/// Whether `s` holds a byte to escape. From 16 bytes: blocks of 16
/// without an early exit inside a block (the compiler turns a block's test
/// into vector compares), the last block overlapping the one before it
/// rather than padded. Shorter strings (most keys): two overlapping words
/// tested at once, bit-parallel ([`word_escaped`]).
#[inline(always)]
fn needs_escape(s: &str) -> bool {
    #[inline(always)]
    fn any_escaped(block: [u8; 16]) -> bool {
        let mut any = false;
        for b in block {
            any |= escaped(b);
        }
        any
    }
    let bytes = s.as_bytes();
    let len = bytes.len();
    let block = |at: usize| -> [u8; 16] { bytes[at..at + 16].try_into().unwrap_or([0; 16]) };
    let word = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap_or([0; 8]));
    let half = |at: usize| u64::from(u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap_or([0; 4])));
    if len >= 16 {
        let mut at = 0;
        while at + 16 < len {
            if any_escaped(block(at)) {
                return true;
            }
            at += 16;
        }
        any_escaped(block(len - 16))
    } else if len >= 8 {
        word_escaped(word(0)) | word_escaped(word(len - 8))
    } else if len >= 4 {
        word_escaped(half(0) | (half(len - 4) << 32))
    } else {
        bytes.iter().fold(false, |any, &b| any | escaped(b))
    }
}

/// Whether any of the 8 bytes of `x` is below 0x20, `"` or `\`: the
/// classic bit-parallel tests (a byte below n: `(x - n*0x01..) & !x &
/// 0x80..`; a byte equal to c: a zero byte in `x ^ c*0x01..`), exact as a
/// yes/no for the whole word (a borrow only marks bytes above a byte that
/// already matched).
#[inline(always)]
fn word_escaped(x: u64) -> bool {
    const ONES: u64 = u64::from_le_bytes([1; 8]);
    const HIGH: u64 = ONES * 0x80;
    let below = |x: u64, n: u64| x.wrapping_sub(ONES * n) & !x & HIGH;
    (below(x, 0x20) | below(x ^ (ONES * u64::from(b'"')), 1) | below(x ^ (ONES * u64::from(b'\\')), 1)) != 0
}

/// `s` as a JSON string.
#[inline(always)]
fn string(out: &mut String, s: &str) -> Result<(), Error> {
    if needs_escape(s) {
        // serde_json's escapes, exactly; rare (a key never has one).
        return serde_json_text(out, s);
    }
    append(out, ["\"", s, "\""]);
    Ok(())
}

/// Appends the pieces to `out` after one capacity check. A field's
/// `,"name":` and a string value's quotes were three or four `push`es,
/// each checking the capacity and storing the length again (callgrind:
/// about half of the 58 instructions a field cost besides its value).
#[inline(always)]
fn append<const N: usize>(out: &mut String, pieces: [&str; N]) {
    // Saturating: a sum past `usize::MAX` makes `reserve` panic rather
    // than wrap to a small room.
    let n = pieces.iter().fold(0usize, |n, p| n.saturating_add(p.len()));
    out.reserve(n);
    // SAFETY: `reserve` made room for `n` more bytes past the length; the
    // copies fill exactly those `n` bytes (the pieces' lengths sum to `n`)
    // before the length is set. The pieces are `&str`s, so the bytes
    // appended are UTF-8 and the `String` stays valid. They cannot overlap
    // `out`'s buffer: `out` is borrowed mutably while they are borrowed.
    unsafe {
        let v = out.as_mut_vec();
        let mut at = v.as_mut_ptr().add(v.len());
        for p in pieces {
            copy(p.as_bytes(), at);
            at = at.add(p.len());
        }
        v.set_len(v.len() + n);
    }
}

/// Copies `src` to `dst`. Up to 32 bytes (most names and values) as two
/// overlapping loads and stores of 16, 8, 4 or 1 bytes, inline; longer
/// through `memcpy` (a call cost about as much as a short copy itself).
///
/// # Safety
/// `dst` is valid for `src.len()` bytes of writes and does not overlap
/// `src`.
#[inline(always)]
unsafe fn copy(src: &[u8], dst: *mut u8) {
    use std::ptr::{read_unaligned as get, write_unaligned as put};
    let (len, s) = (src.len(), src.as_ptr());
    // SAFETY: each branch reads `[0, w)` and `[len - w, len)` of `src`
    // with `w <= len` (inside it), and writes the same ranges of `dst`
    // (inside the `len` bytes the caller vouches for); unaligned loads and
    // stores of plain integers.
    unsafe {
        if len > 32 {
            std::ptr::copy_nonoverlapping(s, dst, len);
        } else if len >= 16 {
            let (a, b) = (get(s.cast::<u128>()), get(s.add(len - 16).cast::<u128>()));
            put(dst.cast::<u128>(), a);
            put(dst.add(len - 16).cast::<u128>(), b);
        } else if len >= 8 {
            let (a, b) = (get(s.cast::<u64>()), get(s.add(len - 8).cast::<u64>()));
            put(dst.cast::<u64>(), a);
            put(dst.add(len - 8).cast::<u64>(), b);
        } else if len >= 4 {
            let (a, b) = (get(s.cast::<u32>()), get(s.add(len - 4).cast::<u32>()));
            put(dst.cast::<u32>(), a);
            put(dst.add(len - 4).cast::<u32>(), b);
        } else {
            for i in 0..len {
                *dst.add(i) = *s.add(i);
            }
        }
    }
}

/// What serde_json writes for `v` (escaped strings, floats).
#[cold]
#[inline(never)]
fn serde_json_text<T: Serialize + ?Sized>(out: &mut String, v: &T) -> Result<(), Error> {
    let text = serde_json::to_string(v).map_err(|e| Error(e.to_string().into()))?;
    out.push_str(&text);
    Ok(())
}

fn integer<I: itoa::Integer>(out: &mut String, v: I) {
    out.push_str(itoa::Buffer::new().format(v));
}

/// The ten integer methods of a `Serializer`, each `|serializer, value|
/// body` with the value's own type.
macro_rules! integers {
    (|$s:ident, $v:ident| $body:expr) => {
        integers!(@each |$s, $v| $body;
            serialize_i8: i8, serialize_i16: i16, serialize_i32: i32, serialize_i64: i64, serialize_i128: i128,
            serialize_u8: u8, serialize_u16: u16, serialize_u32: u32, serialize_u64: u64, serialize_u128: u128);
    };
    (@each |$s:ident, $v:ident| $body:expr; $($f:ident: $t:ty),*) => {
        $(fn $f(self, $v: $t) -> Result<(), Error> {
            let $s = self;
            $body
        })*
    };
}

/// A value.
struct Json<'a> {
    out: &'a mut String,
}

/// A sequence or map being written: whether a comma comes before the next
/// element.
struct Compound<'a> {
    out: &'a mut String,
    first: bool,
}

impl Compound<'_> {
    fn comma(&mut self) {
        if self.first {
            self.first = false;
        } else {
            self.out.push(',');
        }
    }
}

impl<'a> Json<'a> {
    fn open(self, bracket: char) -> Compound<'a> {
        self.out.push(bracket);
        Compound { out: self.out, first: true }
    }

    /// `{"variant":` before a variant's content.
    fn variant(self, variant: &str) -> Result<&'a mut String, Error> {
        self.out.push('{');
        string(self.out, variant)?;
        self.out.push(':');
        Ok(self.out)
    }
}

impl<'a> ser::Serializer for Json<'a> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Compound<'a>;
    type SerializeTuple = Compound<'a>;
    type SerializeTupleStruct = Compound<'a>;
    type SerializeTupleVariant = Compound<'a>;
    type SerializeMap = Compound<'a>;
    type SerializeStruct = Compound<'a>;
    type SerializeStructVariant = Compound<'a>;

    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.out.push_str(if v { "true" } else { "false" });
        Ok(())
    }
    integers!(|s, v| {
        integer(s.out, v);
        Ok(())
    });
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        serde_json_text(self.out, &v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        serde_json_text(self.out, &v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v)
    }
    fn serialize_bytes(self, v: &[u8]) -> Result<(), Error> {
        // An array of numbers, as serde_json writes bytes.
        serde_json_text(self.out, &serde_bytes_as_seq(v))
    }
    fn serialize_none(self) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), Error> {
        self.out.push_str("null");
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        self.serialize_unit()
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        string(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        value: &T,
    ) -> Result<(), Error> {
        let out = self.variant(variant)?;
        value.serialize(Json { out: &mut *out })?;
        out.push('}');
        Ok(())
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(self.open('['))
    }
    fn serialize_tuple(self, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_struct(self, _: &'static str, len: usize) -> Result<Compound<'a>, Error> {
        self.serialize_seq(Some(len))
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        let out = self.variant(variant)?;
        Ok(Json { out }.open('['))
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Compound<'a>, Error> {
        Ok(self.open('{'))
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Compound<'a>, Error> {
        Ok(self.open('{'))
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        variant: &'static str,
        _: usize,
    ) -> Result<Compound<'a>, Error> {
        let out = self.variant(variant)?;
        Ok(Json { out }.open('{'))
    }
}

/// Bytes as the sequence of numbers serde_json writes for them.
fn serde_bytes_as_seq(v: &[u8]) -> impl Serialize + '_ {
    struct Seq<'b>(&'b [u8]);
    impl Serialize for Seq<'_> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_seq(self.0)
        }
    }
    Seq(v)
}

impl ser::SerializeSeq for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        self.comma();
        value.serialize(Json { out: &mut *self.out })
    }
    fn end(self) -> Result<(), Error> {
        self.out.push(']');
        Ok(())
    }
}

impl ser::SerializeTuple for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_element<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        ser::SerializeSeq::end(self)
    }
}

impl ser::SerializeTupleVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        ser::SerializeSeq::serialize_element(self, value)
    }
    fn end(self) -> Result<(), Error> {
        // The sequence, then the variant's object.
        self.out.push_str("]}");
        Ok(())
    }
}

impl ser::SerializeMap for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_key<T: Serialize + ?Sized>(&mut self, key: &T) -> Result<(), Error> {
        self.comma();
        key.serialize(Key { out: &mut *self.out })?;
        self.out.push(':');
        Ok(())
    }
    fn serialize_value<T: Serialize + ?Sized>(&mut self, value: &T) -> Result<(), Error> {
        value.serialize(Json { out: &mut *self.out })
    }
    fn end(self) -> Result<(), Error> {
        self.out.push('}');
        Ok(())
    }
}

impl ser::SerializeStruct for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        let first = std::mem::replace(&mut self.first, false);
        field_name(self.out, first, key);
        value.serialize(Json { out: &mut *self.out })
    }
    fn end(self) -> Result<(), Error> {
        self.out.push('}');
        Ok(())
    }
}

/// A struct field's name and its colon, `"name":`, after a comma unless
/// it is the `first` field, written as it is: a field name is a name the
/// program declares, never data (the records' attribute names, which
/// `attribute_names_need_no_escape` checks in the schema; the identity
/// facts' names, literals or read-back names of the facts' pattern), so it
/// is not searched for bytes to escape; a debug build checks.
///
/// The comma is stored whatever `first` says and the rest written after
/// it or over it: no branch, and no copy of a one- or two-byte lead of
/// unknown length ([`append`]'s way, a byte loop here).
#[inline(always)]
fn field_name(out: &mut String, first: bool, key: &'static str) {
    debug_assert!(!needs_escape(key), "a field name that needs an escape: {key:?}");
    let comma = usize::from(!first);
    // `,"` + name + `":` at most; saturating as in `append`.
    out.reserve(key.len().saturating_add(4));
    // SAFETY: `reserve` made room for `key.len() + 4` bytes past the
    // length; at most that many are written (the comma's byte, then from
    // `comma <= 1`: the quote, the name, the quote and colon), and the
    // length grows by exactly the bytes meant to stay (`comma + len + 3`),
    // all ASCII or the `str` `key`, so the `String` stays UTF-8; `key` is
    // `'static` data, not `out`'s buffer.
    unsafe {
        let v = out.as_mut_vec();
        let len = v.len();
        let at = v.as_mut_ptr().add(len);
        *at = b',';
        let at = at.add(comma);
        *at = b'"';
        copy(key.as_bytes(), at.add(1));
        let end = at.add(1 + key.len());
        *end = b'"';
        *end.add(1) = b':';
        v.set_len(len + comma + key.len() + 3);
    }
}

impl ser::SerializeStructVariant for Compound<'_> {
    type Ok = ();
    type Error = Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), Error> {
        ser::SerializeStruct::serialize_field(self, key, value)
    }
    fn end(self) -> Result<(), Error> {
        // The struct, then the variant's object.
        self.out.push_str("}}");
        Ok(())
    }
}

/// A map key: a string, or a scalar written as one (serde_json's rules).
struct Key<'a> {
    out: &'a mut String,
}

fn key_must_be_a_string<T>() -> Result<T, Error> {
    Err(Error("key must be a string".into()))
}

impl Key<'_> {
    fn quoted(self, text: &str) -> Result<(), Error> {
        self.out.push('"');
        self.out.push_str(text);
        self.out.push('"');
        Ok(())
    }
    fn integer<I: itoa::Integer>(self, v: I) -> Result<(), Error> {
        self.quoted(itoa::Buffer::new().format(v))
    }
    fn float<F: Serialize + Copy + Into<f64>>(self, v: F) -> Result<(), Error> {
        if !v.into().is_finite() {
            return Err(Error("float key must be finite, got NaN or +/-inf".into()));
        }
        let text = serde_json::to_string(&v).map_err(|e| Error(e.to_string().into()))?;
        self.quoted(&text)
    }
}

impl ser::Serializer for Key<'_> {
    type Ok = ();
    type Error = Error;
    type SerializeSeq = Impossible<(), Error>;
    type SerializeTuple = Impossible<(), Error>;
    type SerializeTupleStruct = Impossible<(), Error>;
    type SerializeTupleVariant = Impossible<(), Error>;
    type SerializeMap = Impossible<(), Error>;
    type SerializeStruct = Impossible<(), Error>;
    type SerializeStructVariant = Impossible<(), Error>;

    fn serialize_str(self, v: &str) -> Result<(), Error> {
        string(self.out, v)
    }
    fn serialize_char(self, v: char) -> Result<(), Error> {
        string(self.out, v.encode_utf8(&mut [0; 4]))
    }
    fn serialize_bool(self, v: bool) -> Result<(), Error> {
        self.quoted(if v { "true" } else { "false" })
    }
    integers!(|s, v| s.integer(v));
    fn serialize_f32(self, v: f32) -> Result<(), Error> {
        self.float(v)
    }
    fn serialize_f64(self, v: f64) -> Result<(), Error> {
        self.float(v)
    }
    fn serialize_unit_variant(self, _: &'static str, _: u32, variant: &'static str) -> Result<(), Error> {
        string(self.out, variant)
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), Error> {
        value.serialize(self)
    }
    fn serialize_bytes(self, _: &[u8]) -> Result<(), Error> {
        key_must_be_a_string()
    }
    fn serialize_none(self) -> Result<(), Error> {
        key_must_be_a_string()
    }
    fn serialize_some<T: Serialize + ?Sized>(self, _: &T) -> Result<(), Error> {
        key_must_be_a_string()
    }
    fn serialize_unit(self) -> Result<(), Error> {
        key_must_be_a_string()
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), Error> {
        key_must_be_a_string()
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), Error> {
        key_must_be_a_string()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, Error> {
        key_must_be_a_string()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, Error> {
        key_must_be_a_string()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, Error> {
        key_must_be_a_string()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, Error> {
        key_must_be_a_string()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, Error> {
        key_must_be_a_string()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeStruct, Error> {
        key_must_be_a_string()
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, Error> {
        key_must_be_a_string()
    }
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use proptest::prelude::*;
    use serde::Serialize;

    use super::*;

    fn ours<T: Serialize + ?Sized>(v: &T) -> Option<String> {
        let mut out = String::new();
        write(&mut out, v).ok().map(|()| out)
    }

    fn same<T: Serialize + ?Sized>(v: &T) {
        assert_eq!(ours(v), serde_json::to_string(v).ok());
    }

    #[derive(Serialize)]
    enum Shapes {
        Unit,
        Newtype(u8),
        Tuple(i32, String),
        Struct { a: Option<u64>, b: Vec<&'static str> },
    }

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        One { x: i64 },
        Two(Inner),
    }

    #[derive(Serialize)]
    struct Inner {
        #[serde(rename = "a.b")]
        ab: bool,
        #[serde(skip_serializing_if = "Option::is_none")]
        missing: Option<u32>,
    }

    #[derive(Serialize)]
    struct Outer {
        first: &'static str,
        #[serde(flatten)]
        tagged: Tagged,
        #[serde(flatten)]
        inner: Inner,
        unit: (),
        tuple: (u8, char),
        bytes: &'static [u8],
        float: f64,
        nan: f64,
        small: f32,
        big: (u128, i128),
    }

    /// Every shape serde has, as serde_json writes it.
    #[test]
    fn every_shape_as_serde_json() {
        for s in [Shapes::Unit, Shapes::Newtype(7), Shapes::Tuple(-3, "t\"q".into()), Shapes::Struct { a: None, b: vec!["x", "y\n"] }] {
            same(&s);
        }
        same(&Outer {
            first: "f",
            tagged: Tagged::Two(Inner { ab: true, missing: Some(4) }),
            inner: Inner { ab: false, missing: None },
            unit: (),
            tuple: (255, '\u{1}'),
            bytes: b"\x00\xff",
            float: 1.5e300,
            nan: f64::NAN,
            small: 0.1,
            big: (u128::MAX, i128::MIN),
        });
        same(&Tagged::One { x: i64::MIN });
        same(&vec![Some(u64::MAX), None]);
        same(&());
        same(&Vec::<u8>::new());
        same(&BTreeMap::<String, u8>::new());
    }

    /// Keys: strings (escaped too), and the scalars serde_json takes as
    /// keys, quoted as it quotes them; keys it refuses, refused here.
    #[test]
    fn keys_as_serde_json() {
        same(&BTreeMap::from([("k\"\u{0}".to_string(), 1), ("plain".to_string(), 2)]));
        same(&BTreeMap::from([(-5i64, "a"), (7, "b")]));
        same(&BTreeMap::from([(u128::MAX, 0)]));
        same(&BTreeMap::from([(true, 0), (false, 1)]));
        same(&BTreeMap::from([('c', 0), ('"', 1)]));
        same(&MapOf(vec![(&FloatKey(1.5), &0), (&FloatKey(-0.0), &1), (&FloatKey(1e-7), &2)]));
        assert_eq!(ours(&MapOf(vec![(&FloatKey(f64::NAN), &0u8)])), None);
        assert!(serde_json::to_string(&MapOf(vec![(&FloatKey(f64::NAN), &0u8)])).is_err());
        assert_eq!(ours(&BTreeMap::from([((1, 2), 0)])), None);
        assert!(serde_json::to_string(&BTreeMap::from([((1, 2), 0)])).is_err());
    }

    #[derive(Clone, Copy)]
    struct FloatKey(f64);
    impl Serialize for FloatKey {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.serialize_f64(self.0)
        }
    }

    /// A map of arbitrary keys in the given order.
    struct MapOf<'a, K>(Vec<(&'a K, &'a u8)>);
    impl<K: Serialize> Serialize for MapOf<'_, K> {
        fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            s.collect_map(self.0.iter().copied())
        }
    }

    /// Every byte that needs an escape, at every offset of two 16-byte
    /// blocks and their remainder.
    #[test]
    fn escapes_at_every_offset() {
        for len in 0..40 {
            for at in 0..len {
                for c in (0u8..0x20).chain([b'"', b'\\', 0x7f]).map(char::from).chain(['é', '\u{2028}']) {
                    let mut s: String = "a".repeat(at);
                    s.push(c);
                    s.push_str(&"b".repeat(len - at - 1));
                    same(&s);
                }
            }
        }
    }

    /// Field names and string values of every length up to past the
    /// longest inline copy, each written as serde_json writes it.
    #[test]
    fn names_and_values_of_every_length() {
        struct Field(&'static str, String);
        impl Serialize for Field {
            fn serialize<S: ser::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                use ser::SerializeStruct;
                let mut st = s.serialize_struct("Field", 2)?;
                st.serialize_field(self.0, &self.1)?;
                st.serialize_field("n", &1u8)?;
                st.end()
            }
        }
        for len in 0..70 {
            let name: &'static str = Box::leak("abcdefghij".repeat(7)[..len].to_owned().into_boxed_str());
            let value = "é0123456789".repeat(7).chars().take(len).collect::<String>();
            let f = Field(name, value);
            assert_eq!(ours(&f), serde_json::to_string(&f).ok(), "length {len}");
        }
    }

    proptest! {
        /// Arbitrary text, as a value and as a key.
        #[test]
        fn any_text_as_serde_json(s in any::<String>(), bytes in proptest::collection::vec(any::<u8>(), 0..80)) {
            let lossy = String::from_utf8_lossy(&bytes).into_owned();
            for t in [&s, &lossy] {
                prop_assert_eq!(ours(t), serde_json::to_string(t).ok());
                let map = BTreeMap::from([(t.clone(), t.clone())]);
                prop_assert_eq!(ours(&map), serde_json::to_string(&map).ok());
            }
        }
    }
}
