pub struct PublicKey;
impl PublicKey { pub fn load(_s: &str) -> Result<(), String> { Ok(()) } }
