// Present only so that the aya-build pin in Cargo.toml is a real build dependency.
fn main() {}
