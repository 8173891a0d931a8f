from benchmark.cli.main import program

program()
