// A conv's 32-channel output fed to a conv that reads 64 channels.
use cell_zoo::typed::{Conv, Map};
use tensor::Result;

fn chain(a: &Conv<1, 32>, b: &Conv<64, 64>, image: &Map<1, 28, 28>) -> Result<Map<64, 28, 28>> {
    b.forward(&a.forward(image)?)
}

fn main() {}
