fn main() -> std::process::ExitCode {
    berthctl::main()
}
