print("poolvisor")
