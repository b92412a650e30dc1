// Naming the pooled size explicitly: 14×14 pools to 7×7, not 6×6.
use cell_zoo::typed::Map;
use tensor::Result;

fn pool(x: &Map<16, 14, 14>) -> Result<()> {
    let _ = x.max_pool_2x2::<6, 6>()?;
    Ok(())
}

fn main() {}
