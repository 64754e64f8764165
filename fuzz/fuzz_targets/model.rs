//! Fuzz target `model`: the property [`weir_fuzz::model`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::model(data);
});
