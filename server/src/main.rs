//! The `mandate-server` binary: parses the command line and hands over to the library.

use clap::Parser;

// The server allocates many small, short-lived buffers from several threads at once (CSR
// parsing, DER writing, audit records, store batches). With glibc's malloc its RSS after
// loading 100k entries reached about 800 MiB, with mimalloc about 400 MiB, and allocation
// takes a smaller share of issuance (docs/PERFORMANCE.md).
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // `--spiffe-id` may follow the subcommand (DESIGN 3.9) except under `entry create`.
    let argv = mandate_server::cli::hoist_caller_spiffe_id(std::env::args_os().collect());
    let args = match mandate_server::cli::Cli::try_parse_from(argv) {
        Ok(args) => args,
        Err(e) => {
            // clap prints help/version on stdout (exit 0) and usage errors on stderr (exit 2);
            // DESIGN/SYSTEM want 64 for usage errors.
            let code = if e.use_stderr() { 64 } else { 0 };
            let _ = e.print();
            return std::process::ExitCode::from(code);
        }
    };
    mandate_server::cli::main(args)
}
