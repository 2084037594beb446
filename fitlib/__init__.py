"""fitlib: recover SMPL bodies from single images."""
