//! Fuzz target `readsplit`: the property [`weir_fuzz::readsplit`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::readsplit(data);
});
