fn main() -> std::process::ExitCode {
    undelete::main()
}
