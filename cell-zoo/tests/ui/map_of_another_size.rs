// A 14×14 map handed to a cell built for 7×7 maps.
use cell_zoo::typed::{Gru, Map};
use tensor::{Device, Result};

fn wire(cell: &Gru<32, 32, 7, 7>, x: &Map<32, 14, 14>) -> Result<()> {
    let state = cell.zero_state(1, Device::Cpu)?;
    let _ = cell.step(x, &state)?;
    Ok(())
}

fn main() {}
