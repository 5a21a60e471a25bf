//! A record's parts written as fields of the record itself, with their
//! field names kept `&'static str`.
//!
//! Why not `#[serde(flatten)]` for `Serialize`: serde writes a struct with
//! a flattened part as a map, and hands every field name of it (the
//! record's own and its parts') to the serializer as a map key of any
//! lifetime. A serializer must then treat each name as text it has never
//! seen: the store's JSON writer tested every key for bytes to escape, and
//! the attribute renderer interned every key, on every record (a quarter
//! of the pipeline's instructions; docs/design.md, "Pipeline"). Written
//! as a struct whose parts forward their fields here, every name arrives
//! as a struct field name, `&'static str`, as the derives declare them.
//!
//! The records keep `#[serde(flatten)]` for `Deserialize` and
//! `JsonSchema`; a record with flattened parts implements `Serialize` by
//! hand with [`fields`] and [`opt`], in its declaration's field order and
//! with its `skip_serializing_if` rules (`every_record_reads_back_as_itself`
//! and `no_record_text_has_a_null` in `record.rs` check both).
//!
//! Input: a part: a struct, an internally tagged enum of structs, an
//! `Option` of one (none writes nothing). Output: its fields, into the
//! struct being serialised. Anything else is an error (as serde's own
//! flattening of a non-map value is).
use serde::ser::{self, Impossible, Serialize, SerializeStruct, Serializer};

/// The field count a record with flattened parts announces: its parts'
/// fields are not counted ahead. Not 0, which serde_json takes for an
/// empty object; the agent's serializers ignore it.
pub const UNCOUNTED: usize = 1;

/// Writes `part`'s fields into `into`, the struct being serialised.
pub fn fields<S: SerializeStruct, T: Serialize + ?Sized>(into: &mut S, part: &T) -> Result<(), S::Error> {
    part.serialize(Flat(into))
}

/// The field `key` with the value of `value`, or skipped when it is
/// `None` (`skip_serializing_if = "Option::is_none"`).
pub fn opt<S: SerializeStruct, T: Serialize>(into: &mut S, key: &'static str, value: &Option<T>) -> Result<(), S::Error> {
    match value {
        Some(v) => into.serialize_field(key, v),
        None => into.skip_field(key),
    }
}

/// The serializer a part is written with: a struct's fields go to the
/// enclosing struct.
struct Flat<'a, S>(&'a mut S);

fn not_a_struct<E: ser::Error, T>() -> Result<T, E> {
    Err(E::custom("a flattened part must be a struct"))
}


impl<'a, S: SerializeStruct> Serializer for Flat<'a, S> {
    type Ok = ();
    type Error = S::Error;
    type SerializeSeq = Impossible<(), S::Error>;
    type SerializeTuple = Impossible<(), S::Error>;
    type SerializeTupleStruct = Impossible<(), S::Error>;
    type SerializeTupleVariant = Impossible<(), S::Error>;
    type SerializeMap = Impossible<(), S::Error>;
    type SerializeStruct = Self;
    type SerializeStructVariant = Impossible<(), S::Error>;

    refuse!(not_a_struct();
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
        serialize_unit_variant(&'static str, u32, &'static str),
    );

    fn serialize_none(self) -> Result<(), S::Error> {
        Ok(())
    }
    fn serialize_some<T: Serialize + ?Sized>(self, value: &T) -> Result<(), S::Error> {
        value.serialize(self)
    }
    fn serialize_unit(self) -> Result<(), S::Error> {
        Ok(())
    }
    fn serialize_unit_struct(self, _: &'static str) -> Result<(), S::Error> {
        Ok(())
    }
    fn serialize_newtype_struct<T: Serialize + ?Sized>(self, _: &'static str, value: &T) -> Result<(), S::Error> {
        value.serialize(self)
    }
    fn serialize_newtype_variant<T: Serialize + ?Sized>(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: &T,
    ) -> Result<(), S::Error> {
        not_a_struct()
    }
    fn serialize_seq(self, _: Option<usize>) -> Result<Self::SerializeSeq, S::Error> {
        not_a_struct()
    }
    fn serialize_tuple(self, _: usize) -> Result<Self::SerializeTuple, S::Error> {
        not_a_struct()
    }
    fn serialize_tuple_struct(self, _: &'static str, _: usize) -> Result<Self::SerializeTupleStruct, S::Error> {
        not_a_struct()
    }
    fn serialize_tuple_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeTupleVariant, S::Error> {
        not_a_struct()
    }
    fn serialize_map(self, _: Option<usize>) -> Result<Self::SerializeMap, S::Error> {
        not_a_struct()
    }
    fn serialize_struct(self, _: &'static str, _: usize) -> Result<Self, S::Error> {
        Ok(self)
    }
    fn serialize_struct_variant(
        self,
        _: &'static str,
        _: u32,
        _: &'static str,
        _: usize,
    ) -> Result<Self::SerializeStructVariant, S::Error> {
        not_a_struct()
    }
}

impl<S: SerializeStruct> SerializeStruct for Flat<'_, S> {
    type Ok = ();
    type Error = S::Error;
    fn serialize_field<T: Serialize + ?Sized>(&mut self, key: &'static str, value: &T) -> Result<(), S::Error> {
        self.0.serialize_field(key, value)
    }
    fn skip_field(&mut self, key: &'static str) -> Result<(), S::Error> {
        self.0.skip_field(key)
    }
    fn end(self) -> Result<(), S::Error> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use serde::Serialize;

    use super::*;

    #[derive(Serialize)]
    struct Part {
        #[serde(rename = "a.b")]
        a: u32,
        #[serde(rename = "c", skip_serializing_if = "Option::is_none")]
        c: Option<&'static str>,
    }

    #[derive(Serialize)]
    #[serde(tag = "kind")]
    enum Tagged {
        #[serde(rename = "p")]
        P(Part),
    }

    struct Whole {
        head: &'static str,
        part: Part,
        tagged: Tagged,
        none: Option<Part>,
        tail: Option<u8>,
    }

    impl Serialize for Whole {
        fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
            let mut st = s.serialize_struct("Whole", UNCOUNTED)?;
            st.serialize_field("head", self.head)?;
            fields(&mut st, &self.part)?;
            fields(&mut st, &self.tagged)?;
            fields(&mut st, &self.none)?;
            opt(&mut st, "tail", &self.tail)?;
            st.end()
        }
    }

    /// The parts' fields land in the record, in order, as serde's own
    /// flattening would put them.
    #[test]
    fn parts_become_fields_of_the_record() {
        let w = Whole {
            head: "h",
            part: Part { a: 1, c: None },
            tagged: Tagged::P(Part { a: 2, c: Some("x") }),
            none: None,
            tail: None,
        };
        let text = serde_json::to_string(&w).unwrap();
        assert_eq!(text, r#"{"head":"h","a.b":1,"kind":"p","a.b":2,"c":"x"}"#);
        let mut ours = String::new();
        crate::model::json::write(&mut ours, &w).unwrap();
        assert_eq!(ours, text);
    }

    /// A part that is not a struct is an error, not a field.
    #[test]
    fn a_part_that_is_not_a_struct_is_an_error() {
        struct Bad;
        impl Serialize for Bad {
            fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                let mut st = s.serialize_struct("Bad", UNCOUNTED)?;
                fields(&mut st, &7u32)?;
                st.end()
            }
        }
        assert!(serde_json::to_string(&Bad).is_err());
        assert!(crate::model::json::write(&mut String::new(), &Bad).is_err());
    }
}
