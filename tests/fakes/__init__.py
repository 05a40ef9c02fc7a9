# Stand-ins for hardware at the boundaries the tests own (see fake_lora_modem.py).
