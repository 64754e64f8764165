//! Fuzz target `haproxy`: the property [`weir_fuzz::haproxy`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::haproxy(data);
});
