//! The `egret` command-line tool.

fn main() {
    println!("egret");
}
