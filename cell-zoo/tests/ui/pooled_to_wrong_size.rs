// 2×2/2 "SAME" pooling maps 7×7 to 4×4; a 3×3 result is a type error.
use cell_zoo::typed::Map;
use tensor::Result;

fn pool(x: &Map<16, 7, 7>) -> Result<Map<16, 3, 3>> {
    x.max_pool_2x2()
}

fn main() {}
