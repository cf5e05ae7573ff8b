use std::process::ExitCode;

// The load engine allocates a little per request (hyper's dispatch and headers); mimalloc
// makes that measurably cheaper than glibc's malloc.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> ExitCode {
    let code = match runner::cli::run() {
        Ok(code) => code,
        Err(err) => {
            eprintln!("runner: {err:#}");
            ExitCode::FAILURE
        }
    };
    runner::journal::close();
    code
}
