//! Fuzz target `admit_proxy`: the property [`weir_fuzz::admit_proxy`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::admit_proxy(data);
});
