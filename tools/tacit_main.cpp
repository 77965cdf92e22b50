#include <tacit/tacit.hpp>
#include <iostream>
int main() { std::cout << "tacit " << tacit::version << "\n"; }
