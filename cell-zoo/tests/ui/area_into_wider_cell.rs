// A 128-channel area wired into a 256-channel cell.
use cell_zoo::typed::{Conv, Map, Rgc};
use tensor::{Device, Result};

fn wire(conv: &Conv<64, 128>, cell: &Rgc<64, 256, 8, 8>, u: &Map<64, 8, 8>) -> Result<()> {
    let x = conv.forward(u)?;
    let state = cell.zero_state(1, Device::Cpu)?;
    let _ = cell.step(&x, u, &state)?;
    Ok(())
}

fn main() {}
