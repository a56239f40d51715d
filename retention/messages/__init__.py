"""Messages for contacted customers: generate, shield (safety checks and repairs), schedule (send_at)."""
