//! The `dynload` command.

fn main() {
    println!("dynload");
}
