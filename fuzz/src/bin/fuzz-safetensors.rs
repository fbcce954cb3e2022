//! AFL++ entry point for [`polyattn_fuzz::safetensors`].

fn main() {
    afl::fuzz!(|data: &[u8]| {
        polyattn_fuzz::safetensors(data);
    });
}
