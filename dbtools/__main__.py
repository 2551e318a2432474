from dbtools.entry import run

run()
