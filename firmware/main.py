# pollen node: what a board runs at boot. The application is in pollen_io/app.py.
from pollen_io.app import main

main()
