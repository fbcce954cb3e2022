//! AFL++ entry point for [`polyattn_fuzz::cli_args`].

fn main() {
    afl::fuzz!(|data: &[u8]| {
        polyattn_fuzz::cli_args(data);
    });
}
