//! Fuzz target `govern`: the property [`weir_fuzz::govern`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::govern(data);
});
