fn main() {
    std::process::exit(nodeprep::app::main());
}
