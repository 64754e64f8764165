//! Fuzz target `decide`: the property [`weir_fuzz::decide`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::decide(data);
});
