//! Fuzz target `api`: the property [`weir_fuzz::api`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::api(data);
});
