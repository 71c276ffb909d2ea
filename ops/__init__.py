"""Operations endpoints: /healthz, /readyz and /system (and the heartbeats they read)."""
