//! Fuzz target `lint`: the property [`weir_fuzz::lint`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::lint(data);
});
