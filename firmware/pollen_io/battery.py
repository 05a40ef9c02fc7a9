# Battery voltage from the board's ADC divider: board.json "battery_adc"
# (hardware/README.md): {"pin", "divider", "enable_pin", "enable_value"}.
# Boards without one (null: no divider, or a PMU that reads it) report none.


def reader(cfg, adc_factory=None, pin_factory=None, read_pin=None):
    # -> a function returning the battery's millivolts, or None
    if not cfg:
        return None
    if adc_factory is None:
        from machine import ADC, Pin

        def adc_factory(pin):
            a = ADC(Pin(pin))
            if hasattr(a, "atten"):  # ESP32: the full 0..3.1 V range
                a.atten(ADC.ATTN_11DB)
            return a

        def pin_factory(pin):
            return Pin(pin, Pin.OUT)

        def read_pin(pin):
            return Pin(pin, Pin.IN).value()
    en = cfg.get("enable_pin")
    on = cfg.get("enable_value")
    if en is not None and on is None:
        # the switch's polarity depends on the board's revision (Heltec V3,
        # hardware/README.md): read as an input, the pin floats high through
        # a pull-up on the revisions that enable the divider with LOW
        on = 0 if read_pin(en) else 1
    adc = adc_factory(cfg["pin"])
    divider = cfg["divider"]
    switch = pin_factory(en) if en is not None else None

    def read_mv():
        if switch is not None:
            switch.value(on)
            _settle()
        if hasattr(adc, "read_uv"):
            uv = adc.read_uv()
        else:  # RP2040: 16-bit reading of 0..3.3 V
            uv = adc.read_u16() * 3300000 // 65535
        if switch is not None:
            switch.value(1 - on)
        return int(uv * divider) // 1000

    return read_mv


def _settle():
    # the divider's capacitor charges after it is switched on
    try:
        import time
        time.sleep_ms(10)
    except AttributeError:  # CPython, in tests
        pass
