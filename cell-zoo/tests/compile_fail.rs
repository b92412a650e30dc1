//! The typed cells reject mis-wired models at compile time: each file under `ui/` wires
//! maps, cells or states of different shapes together, and must fail to build with the error
//! recorded beside it (`*.stderr`; regenerate with `TRYBUILD=overwrite cargo test -p cell-zoo
//! --test compile_fail` after a compiler upgrade changes the wording).

#[test]
fn shape_mismatches_do_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/ui/*.rs");
}
