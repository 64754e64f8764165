//! Fuzz target `scenario`: the property [`weir_fuzz::scenario`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::scenario(data);
});
