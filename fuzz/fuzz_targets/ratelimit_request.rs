//! Fuzz target `ratelimit_request`: the property [`weir_fuzz::ratelimit_request`].
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    weir_fuzz::ratelimit_request(data);
});
