module gotarjudge

go 1.19
