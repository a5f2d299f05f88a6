//! The `mandate-server` binary: parses the command line and hands over to the library.

use clap::Parser;

// Signing an SVID allocates a few dozen small buffers (CSR parse, DER writing, audit record,
// store batch); mimalloc's thread-local free lists take about half of glibc's cost there.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    let args = match mandate_server::cli::Cli::try_parse() {
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
