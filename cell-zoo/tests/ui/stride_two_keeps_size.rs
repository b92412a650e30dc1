// A stride-2 conv halves the map; claiming it keeps 28×28 is a type error.
use cell_zoo::typed::{Conv, Map};
use tensor::Result;

fn strided(conv: &Conv<1, 8, 2>, image: &Map<1, 28, 28>) -> Result<Map<8, 28, 28>> {
    conv.forward(image)
}

fn main() {}
