//! AFL++ entry point for [`polyattn_fuzz::npy`].

fn main() {
    afl::fuzz!(|data: &[u8]| {
        polyattn_fuzz::npy(data);
    });
}
