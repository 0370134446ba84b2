"""facerestore: self-hosted AI face restoration."""
