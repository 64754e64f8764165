//! Fuzz target `prometheus`: the property [`weir_fuzz::prometheus`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::prometheus(data);
});
