from multilayercache._core._flight_py import Call as Call
from multilayercache._core._flight_py import Lead as Lead
