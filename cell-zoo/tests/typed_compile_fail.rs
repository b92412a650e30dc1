//! The typed cells reject mis-wired models at compile time: each file under `compile_fail/` wires
//! maps, cells or states of different shapes together, and must fail to build with the error
//! recorded beside it (`*.stderr`; regenerate with `TRYBUILD=overwrite cargo test -p cell-zoo
//! --test typed_compile_fail` after a compiler upgrade changes the wording).

#[test]
fn shape_mismatches_do_not_compile() {
    trybuild::TestCases::new().compile_fail("tests/compile_fail/*.rs");
}
