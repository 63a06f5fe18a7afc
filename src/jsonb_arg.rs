//! A jsonb argument taken as its binary value.
//!
//! The jsonb variants of the calendar functions run once per row. pgrx's
//! `JsonB` prints the value to text and parses it again on every call (about
//! 4 µs for a calendar), so these functions take the datum as it is, key the
//! calendar cache on its bytes, and convert it only on a cache miss.
//! `sla.validate_calendar` takes it too, so that every definition, valid or
//! not, goes through the same text parser and its 22023 errors.
use std::ffi::CStr;
use std::marker::PhantomData;

use pgrx::callconv::{Arg, ArgAbi};
use pgrx::datum::FromDatum;
use pgrx::pg_sys;
use pgrx::pgrx_sql_entity_graph::metadata::{
    ArgumentError, ReturnsError, ReturnsRef, SqlMappingRef, SqlTranslatable, TypeOrigin,
};

/// A non-null jsonb argument of the current call.
pub struct JsonbArg<'fcx> {
    datum: pg_sys::Datum,
    _call: PhantomData<&'fcx ()>,
}

impl JsonbArg<'_> {
    /// The binary jsonb value (detoasted if needed). Equal bytes mean equal
    /// definitions, which is all the cache relies on.
    pub fn bytes(&self) -> &[u8] {
        unsafe {
            let varlena = pg_sys::pg_detoast_datum_packed(self.datum.cast_mut_ptr());
            let len = pgrx::varlena::varsize_any_exhdr(varlena);
            let data = pgrx::varlena::vardata_any(varlena).cast::<u8>();
            std::slice::from_raw_parts(data, len)
        }
    }

    /// The value as JSON text, for parsing a definition the cache has not
    /// seen. Not pgrx's `JsonB`: it panics (an internal error) on jsonb that
    /// serde_json refuses, such as 1e400 or deep nesting, where the parser
    /// of the text reports a definition error instead.
    pub fn to_text(&self) -> String {
        unsafe {
            let text = pgrx::direct_function_call::<&CStr>(pg_sys::jsonb_out, &[Some(self.datum)])
                .expect("jsonb_out returns a string");
            let owned = text.to_string_lossy().into_owned();
            pg_sys::pfree(text.as_ptr().cast_mut().cast());
            owned
        }
    }
}

/// Only used through `ArgAbi`, which PostgreSQL's STRICT keeps from nulls.
struct RawDatum(pg_sys::Datum);

impl FromDatum for RawDatum {
    unsafe fn from_polymorphic_datum(
        datum: pg_sys::Datum,
        is_null: bool,
        _typoid: pg_sys::Oid,
    ) -> Option<Self> {
        (!is_null).then_some(RawDatum(datum))
    }
}

unsafe impl<'fcx> ArgAbi<'fcx> for JsonbArg<'fcx> {
    unsafe fn unbox_arg_unchecked(arg: Arg<'_, 'fcx>) -> Self {
        let index = arg.index();
        let RawDatum(datum) = unsafe { arg.unbox_arg_using_from_datum::<RawDatum>() }
            .unwrap_or_else(|| panic!("argument {index} must not be null"));
        JsonbArg {
            datum,
            _call: PhantomData,
        }
    }
}

unsafe impl SqlTranslatable for JsonbArg<'_> {
    const TYPE_IDENT: &'static str = concat!(module_path!(), "::JsonbArg");
    const TYPE_ORIGIN: TypeOrigin = TypeOrigin::External;
    const ARGUMENT_SQL: Result<SqlMappingRef, ArgumentError> = Ok(SqlMappingRef::literal("jsonb"));
    const RETURN_SQL: Result<ReturnsRef, ReturnsError> =
        Ok(ReturnsRef::One(SqlMappingRef::literal("jsonb")));
}
