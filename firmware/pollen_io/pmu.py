# Power management chips that feed a board's radio rail (LILYGO T-Beam v1.0/1.1:
# an AXP192 on I2C). The rail keeps its state while a battery is fitted, so a
# firmware before us may have switched it off: switch it on before the radio.
_AXP192_POWER_OUT = 0x12  # output control: bit 2 = LDO2 on
_AXP192_LDO23_V = 0x28    # LDO2 voltage in the high nibble: 1.8 V + 0.1 V a step
_LDO2_ON = 0x04
_LDO2_3V3 = 0xF0


def radio_rail_on(pmu, i2c_factory=None):
    # pmu: the board profile's "pmu" object. Returns True if a rail was switched.
    if not pmu:
        return False
    if pmu.get("chip") != "axp192" or pmu.get("radio_rail") != "LDO2":
        raise ValueError("board pmu %r / rail %r is not supported"
                         % (pmu.get("chip"), pmu.get("radio_rail")))
    if i2c_factory is None:
        from machine import I2C, Pin

        def i2c_factory(sda, scl):
            return I2C(0, sda=Pin(sda), scl=Pin(scl), freq=400000)
    i2c = i2c_factory(pmu["sda"], pmu["scl"])
    addr = pmu.get("address", 0x34)
    v = i2c.readfrom_mem(addr, _AXP192_LDO23_V, 1)[0]
    i2c.writeto_mem(addr, _AXP192_LDO23_V, bytes(((v & 0x0F) | _LDO2_3V3,)))
    v = i2c.readfrom_mem(addr, _AXP192_POWER_OUT, 1)[0]
    i2c.writeto_mem(addr, _AXP192_POWER_OUT, bytes((v | _LDO2_ON,)))
    return True
