//! Fuzz target `ratelimit_config`: the property [`weir_fuzz::ratelimit_config`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::ratelimit_config(data);
});
